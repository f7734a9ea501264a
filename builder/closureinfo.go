package builder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// ClosureInfoFiles returns the files of a nixpkgs closureInfo directory for
// c, by name: store-paths, registration and total-nar-size.
func (c *Closure) ClosureInfoFiles() map[string][]byte {
	return map[string][]byte{
		"store-paths":    c.StorePaths(),
		"registration":   c.Registration(),
		"total-nar-size": []byte(strconv.FormatUint(c.NarSize(), 10) + "\n"),
	}
}

// WriteClosureInfo writes c as a closureInfo directory at dir. A new
// directory is written under a temporary name beside it and renamed into
// place, so it appears whole or not at all; in an existing directory each
// file is replaced by renaming a finished temporary file over it.
func WriteClosureInfo(dir string, c *Closure) error {
	files := c.ClosureInfoFiles()
	names := []string{"registration", "store-paths", "total-nar-size"}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
		if err != nil {
			return fmt.Errorf("closure info: %w", err)
		}
		ok := false
		defer func() {
			if !ok {
				os.RemoveAll(tmp)
			}
		}()
		for _, n := range names {
			if err := writeFileSync(filepath.Join(tmp, n), files[n]); err != nil {
				return fmt.Errorf("closure info: %w", err)
			}
		}
		if err := os.Chmod(tmp, 0o755); err != nil {
			return fmt.Errorf("closure info: %w", err)
		}
		if err := os.Rename(tmp, dir); err != nil {
			return fmt.Errorf("closure info: %w", err)
		}
		ok = true
		return nil
	case err != nil:
		return fmt.Errorf("closure info: %w", err)
	case !st.IsDir():
		return fmt.Errorf("closure info: %s exists and is not a directory", dir)
	}
	for _, n := range names {
		if err := WriteFileAtomic(filepath.Join(dir, n), files[n]); err != nil {
			return fmt.Errorf("closure info: %w", err)
		}
	}
	return nil
}

// WriteFileAtomic writes data to a temporary file beside name and renames it
// to name, so readers see the old file or the new one, never a part.
func WriteFileAtomic(name string, data []byte) error {
	return CreateAtomic(name, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

func writeFileSync(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
