package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// CreateVia writes the file name through write, for writers that create
// their file themselves by name: write gets a new temporary directory
// beside name and returns the path of the file it wrote inside it. That
// file is synced, given mode 0644 and renamed to name only when write
// succeeds; the directory is removed in every case, and an existing name
// is left untouched on failure.
func CreateVia(name string, write func(tmpDir string) (string, error)) (err error) {
	if err := checkTarget(name, false); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Dir(name), TempPrefix(name))
	if err != nil {
		return fmt.Errorf("creating %s: %w", name, withoutPath(err))
	}
	register(dir)
	defer func() {
		if rerr := RemoveAll(dir); err == nil && rerr != nil {
			err = fmt.Errorf("removing the temporary %s: %w", dir, rerr)
		}
		unregister(dir)
	}()
	p, err := write(dir)
	if err != nil {
		return nameTarget(err, dir, filepath.Dir(name))
	}
	if rel, rerr := filepath.Rel(dir, p); rerr != nil || !filepath.IsLocal(rel) {
		return fmt.Errorf("writing %s: %s is not in the temporary directory", name, p)
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("not a regular file")
		}
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return finish(f, name)
}
