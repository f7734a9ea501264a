// Package atomicfile is the one way nbimg lands its outputs: a file or a
// whole directory is written under a temporary name beside its target and
// renamed into place only when complete, so a reader (or the next run) sees
// the previous output or the new one, never a part of either.
//
// Rules every output follows:
//   - the target must be a regular file (Create) or a directory (ReplaceDir)
//     or not exist; a symlink, device node, FIFO or socket is refused, so
//     `-o /dev/null` never replaces a device;
//   - modes do not depend on the umask: files get 0644 (0755 when the
//     owner may execute), directories 0755, except where the writer set a
//     narrower read-only mode on purpose (Nix store copies keep 0555/0444),
//     because servers running as another user must read them;
//   - on failure the temporary file or tree is removed, also when it holds
//     read-only directories and the process is not root;
//   - while a write is under way its temporary path is registered, and
//     RemoveTemporaries removes what is left when the process must stop at
//     once (a second interrupt).
//
// Limits: the temporary name is in the target's directory (same file
// system, so the rename is atomic); replacing an existing directory takes
// two renames, so for a moment the target name is absent.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// ErrNotRegular is returned when an output names something that is not a
// regular file or directory (symlink, device, FIFO, socket).
var ErrNotRegular = errors.New("not a regular file or directory; nbimg replaces only those")

var (
	mu sync.Mutex
	// pending maps each temporary path to what RemoveTemporaries does
	// with it: nil removes it; otherwise the function is called (a
	// previous output moved aside is put back).
	pending = map[string]func(){}
)

func register(p string) {
	mu.Lock()
	pending[p] = nil
	mu.Unlock()
}

func unregister(p string) {
	mu.Lock()
	delete(pending, p)
	mu.Unlock()
}

// RemoveTemporaries removes every temporary file and tree of writes still
// under way. It is for a process that stops without unwinding (a second
// interrupt); ordinary failures clean up by themselves.
func RemoveTemporaries() {
	mu.Lock()
	defer mu.Unlock()
	for p, f := range pending {
		if f != nil {
			f()
		} else {
			_ = RemoveAll(p)
		}
		delete(pending, p)
	}
}

// TempPrefix is how the temporary names of writes to name begin (a random
// suffix follows): "." and name's base name, cut so that the whole stays
// within the 255 bytes a file name may have, then ".tmp-".
func TempPrefix(name string) string {
	b := filepath.Base(name)
	if len(b) > 200 {
		b = b[:200]
	}
	return "." + b + ".tmp-"
}

// checkTarget refuses a target that exists as something other than want
// (a regular file or a directory).
func checkTarget(name string, wantDir bool) error {
	st, err := os.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case st.Mode().IsRegular() && !wantDir:
		return nil
	case st.IsDir() && wantDir:
		return nil
	case st.IsDir():
		return fmt.Errorf("output %s is a directory", name)
	case st.Mode().IsRegular():
		return fmt.Errorf("output %s exists and is not a directory", name)
	}
	kind := "a special file"
	switch m := st.Mode(); {
	case m&fs.ModeSymlink != 0:
		kind = "a symlink (give the path it points to)"
	case m&fs.ModeDevice != 0:
		kind = "a device"
	case m&fs.ModeNamedPipe != 0:
		kind = "a FIFO"
	case m&fs.ModeSocket != 0:
		kind = "a socket"
	}
	return fmt.Errorf("output %s is %s: %w", name, kind, ErrNotRegular)
}

// Create writes the file name through write, which gets a new temporary
// file in the same directory. The file is synced, given mode 0644 and
// renamed to name only when write succeeds; otherwise it is removed and an
// existing name is left untouched.
func Create(name string, write func(f *os.File) error) (err error) {
	if err := checkTarget(name, false); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(name), TempPrefix(name))
	if err != nil {
		return fmt.Errorf("creating %s: %w", name, withoutPath(err))
	}
	register(f.Name())
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
		unregister(f.Name())
	}()
	if err := write(f); err != nil {
		return nameTarget(err, f.Name(), name)
	}
	return finish(f, name)
}

// finish gives the written temporary file f mode 0644, syncs and closes
// it, and renames it to name unless name has meanwhile become something
// that must not be replaced. f is closed in every case.
func finish(f *os.File, name string) error {
	err := f.Chmod(0o644)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	// The target may have appeared since the check (another process).
	if err := checkTarget(name, false); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), name); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// WriteFile writes data to name as Create does.
func WriteFile(name string, data []byte) error {
	return Create(name, func(f *os.File) error {
		if _, err := f.Write(data); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
		return nil
	})
}

// ReplaceDir builds a directory under a temporary name beside dir, calling
// fill with that name, and renames it to dir once fill succeeds. An
// existing dir is replaced only then, so dir holds the old outputs or the
// new ones, never a mix; on failure the temporary tree is removed. Modes
// in the new tree are made readable by everyone as far as the owner may
// read (see the package doc).
func ReplaceDir(dir string, fill func(tmp string) error) (err error) {
	dir = filepath.Clean(dir)
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("output directory %s: %w", dir, err)
	}
	if err := checkTarget(dir, true); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, TempPrefix(dir))
	if err != nil {
		return fmt.Errorf("output directory %s: %w", dir, withoutPath(err))
	}
	register(tmp)
	defer func() {
		if err != nil {
			_ = RemoveAll(tmp)
		}
		unregister(tmp)
	}()
	if err := fill(tmp); err != nil {
		return nameTarget(err, tmp, dir)
	}
	if err := shareModes(tmp); err != nil {
		return fmt.Errorf("output directory %s: %w", dir, err)
	}
	// The swap holds mu, so RemoveTemporaries (a second interrupt) sees
	// the old tree either still at dir or moved aside with a way back.
	mu.Lock()
	var old string
	if _, err := os.Lstat(dir); err == nil {
		old = tmp + ".old"
		if err := os.Rename(dir, old); err != nil {
			mu.Unlock()
			return fmt.Errorf("replacing %s: %w", dir, err)
		}
		pending[old] = func() {
			// Put the previous output back unless the new one is in place.
			if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
				_ = os.Rename(old, dir)
			} else {
				_ = RemoveAll(old)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		mu.Unlock()
		return fmt.Errorf("output directory %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			_ = os.Rename(old, dir)
			delete(pending, old)
		}
		mu.Unlock()
		return fmt.Errorf("output directory %s: %w", dir, err)
	}
	mu.Unlock()
	if old != "" {
		defer unregister(old)
	}
	if old != "" {
		if err := RemoveAll(old); err != nil {
			return fmt.Errorf("removing the previous %s (left at %s): %w", dir, old, err)
		}
	}
	return nil
}

// shareModes gives group and others the owner's read and execute bits on
// every file and directory under root (not symlinks), and the root itself
// mode 0755, so the tree does not depend on the umask.
func shareModes(root string) error {
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		m := info.Mode().Perm()
		rx := m & 0o500
		want := m | rx>>3 | rx>>6
		if want != m {
			return os.Chmod(p, want|info.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
		}
		return nil
	})
}

// RemoveAll removes the tree at p like os.RemoveAll, first making its
// directories writable by the owner, so trees with read-only directories
// (Nix store copies) go away without root.
func RemoveAll(p string) error {
	if err := os.RemoveAll(p); err == nil {
		return nil
	}
	_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			if info, ierr := d.Info(); ierr == nil && info.Mode().Perm()&0o700 != 0o700 {
				_ = os.Chmod(q, info.Mode().Perm()|0o700)
			}
		}
		return nil
	})
	return os.RemoveAll(p)
}

// targetError is an error whose text names the target where the original
// named the temporary path; it unwraps to the original.
type targetError struct {
	msg string
	err error
}

func (e *targetError) Error() string { return e.msg }
func (e *targetError) Unwrap() error { return e.err }

// nameTarget rewrites err so that it names target, which the user gave,
// instead of the temporary path tmp (a write error from the file system
// names the file it was writing).
func nameTarget(err error, tmp, target string) error {
	msg := err.Error()
	if !strings.Contains(msg, tmp) {
		return err
	}
	return &targetError{msg: strings.ReplaceAll(msg, tmp, target), err: err}
}

// withoutPath drops the path from a *fs.PathError about a temporary name
// the user never gave, keeping the operation's error ("permission
// denied").
func withoutPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
