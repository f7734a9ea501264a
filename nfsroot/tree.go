package nfsroot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrFileType is returned for a file a store cannot hold (a device, a
// FIFO or a socket).
var ErrFileType = errors.New("nfsroot: not a regular file, directory or symlink")

// StorePath is one store path to copy: Path in the store namespace
// (/nix/store/<hash>-<name>) and Host, where it is on this machine.
type StorePath struct {
	Path string
	Host string
}

// Root describes the NFS root file system.
type Root struct {
	// Store is the closure, in any order.
	Store []StorePath
	// Registration is nix-path-registration, the closure's registration
	// as nixpkgs' closureInfo writes it.
	Registration []byte
	// Init is what sbin/init links to, <toplevel>/init.
	Init string
	// BootDir, when set, is the written boot/ directory: its BootFiles
	// (relative names, see BootResult.Files) are copied to boot/firmware
	// (files 0644, directories 0755), as the Pi sees its boot files once
	// booted. Serial-number copies are left out.
	BootDir   string
	BootFiles []string
	// Workers is how many store paths are copied at once; 0 is a few.
	Workers int
	// Progress, when set, is called after each store path with the number
	// copied so far and the total.
	Progress func(done, total int)
}

// RootStats describes a written root.
type RootStats struct {
	Files, Dirs, Symlinks int
	Bytes                 int64
	// Owned reports whether everything is owned by root (false when not
	// run as root).
	Owned bool
}

// The directories of the root besides nix/store, boot/firmware and sbin,
// and their modes. NixOS's stage 2 makes the rest.
var rootDirs = []struct {
	name string
	mode fs.FileMode
}{
	{"dev", 0o755},
	{"etc", 0o755},
	{"mnt", 0o755},
	{"proc", 0o555},
	{"root", 0o700},
	{"run", 0o755},
	{"sys", 0o555},
	{"tmp", 0o777 | fs.ModeSticky},
	{"var", 0o755},
}

// WriteRoot writes the NFS root into dir, which must exist and be empty:
// nix/store/<name> for each store path, nix-path-registration, sbin/init
// (a symlink to r.Init), boot/firmware and the directories a root file
// system needs. See the package documentation for modes and owners.
func WriteRoot(ctx context.Context, dir string, r Root) (*RootStats, error) {
	if r.Init == "" || !path.IsAbs(r.Init) {
		return nil, fmt.Errorf("nfsroot: init %q is not an absolute path", r.Init)
	}
	c := newCopier(os.Geteuid() == 0)
	store := filepath.Join(dir, "nix", "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		return nil, fmt.Errorf("nfsroot: %w", err)
	}
	seen := map[string]bool{}
	for _, p := range r.Store {
		base := path.Base(p.Path)
		if path.Dir(p.Path) != "/nix/store" || base == "." || base == ".." {
			return nil, fmt.Errorf("nfsroot: %s is not in /nix/store", p.Path)
		}
		if seen[base] {
			return nil, fmt.Errorf("nfsroot: store path %s given twice", p.Path)
		}
		seen[base] = true
	}
	if err := c.copyStore(ctx, store, r); err != nil {
		return nil, err
	}
	for _, d := range rootDirs {
		p := filepath.Join(dir, d.name)
		if err := os.Mkdir(p, 0o755); err != nil {
			return nil, fmt.Errorf("nfsroot: %w", err)
		}
		if err := c.finish(p, d.mode, false); err != nil {
			return nil, err
		}
	}
	reg := filepath.Join(dir, "nix-path-registration")
	if err := os.WriteFile(reg, r.Registration, 0o444); err != nil {
		return nil, fmt.Errorf("nfsroot: %w", err)
	}
	if err := c.finish(reg, 0o444, false); err != nil {
		return nil, err
	}
	sbin := filepath.Join(dir, "sbin")
	if err := os.Mkdir(sbin, 0o755); err != nil {
		return nil, fmt.Errorf("nfsroot: %w", err)
	}
	if err := os.Symlink(r.Init, filepath.Join(sbin, "init")); err != nil {
		return nil, fmt.Errorf("nfsroot: %w", err)
	}
	if err := c.finish(filepath.Join(sbin, "init"), 0, true); err != nil {
		return nil, err
	}
	if err := c.finish(sbin, 0o755, false); err != nil {
		return nil, err
	}
	bootDir := filepath.Join(dir, "boot")
	if err := os.Mkdir(bootDir, 0o755); err != nil {
		return nil, fmt.Errorf("nfsroot: %w", err)
	}
	fw := filepath.Join(bootDir, "firmware")
	if err := os.Mkdir(fw, 0o755); err != nil {
		return nil, fmt.Errorf("nfsroot: %w", err)
	}
	var subdirs []string
	for _, n := range r.BootFiles {
		if !filepath.IsLocal(n) {
			return nil, fmt.Errorf("nfsroot: boot file %q is not a relative path", n)
		}
		dst := filepath.Join(fw, filepath.FromSlash(n))
		if d := filepath.Dir(dst); d != fw {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, fmt.Errorf("nfsroot: %w", err)
			}
			subdirs = append(subdirs, d)
		}
		if err := c.copyPlain(dst, filepath.Join(r.BootDir, filepath.FromSlash(n))); err != nil {
			return nil, err
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(subdirs)))
	for _, d := range subdirs {
		if err := c.finish(d, 0o755, false); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{fw, bootDir, filepath.Join(dir, "nix", "store"), filepath.Join(dir, "nix"), dir} {
		if err := c.finish(d, 0o755, false); err != nil {
			return nil, err
		}
	}
	st := c.stats
	st.Owned = c.chown
	return &st, nil
}

// copier copies trees and settles modes, times and owners.
type copier struct {
	chown bool
	mu    sync.Mutex
	stats RootStats
}

func newCopier(chown bool) *copier { return &copier{chown: chown} }

// finish gives p its mode (unless it is a symlink), modification time 1
// and, as root, owner root.
func (c *copier) finish(p string, mode fs.FileMode, symlink bool) error {
	if c.chown {
		if err := os.Lchown(p, 0, 0); err != nil {
			return fmt.Errorf("nfsroot: %w", err)
		}
	}
	if !symlink {
		if err := os.Chmod(p, mode); err != nil {
			return fmt.Errorf("nfsroot: %w", err)
		}
	}
	t := []unix.Timeval{{Sec: 1}, {Sec: 1}}
	if err := unix.Lutimes(p, t); err != nil {
		return fmt.Errorf("nfsroot: setting the time of %s: %w", p, err)
	}
	return nil
}

// copyStore copies the store paths into store, a few at a time.
func (c *copier) copyStore(ctx context.Context, store string, r Root) error {
	workers := r.Workers
	if workers <= 0 {
		workers = min(4, max(2, runtime.NumCPU()))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		doneMu   sync.Mutex
		done     int
	)
	jobs := make(chan StorePath)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range jobs {
				if err := c.copyStorePath(ctx, filepath.Join(store, path.Base(p.Path)), p.Host); err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("store path %s: %w", p.Path, err); cancel() })
					continue
				}
				if r.Progress != nil {
					doneMu.Lock()
					done++
					r.Progress(done, len(r.Store))
					doneMu.Unlock()
				}
			}
		}()
	}
	for _, p := range r.Store {
		select {
		case jobs <- p:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// copyStorePath copies the host tree src to dst with the store's modes.
func (c *copier) copyStorePath(ctx context.Context, dst, src string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		t, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(t, dst); err != nil {
			return err
		}
		c.count(func(s *RootStats) { s.Symlinks++ })
		return c.finish(dst, 0, true)
	case fi.Mode().IsRegular():
		mode := fs.FileMode(0o444)
		if fi.Mode()&0o111 != 0 {
			mode = 0o555
		}
		n, err := copyFile(dst, src)
		if err != nil {
			return err
		}
		c.count(func(s *RootStats) { s.Files++; s.Bytes += n })
		return c.finish(dst, mode, false)
	case fi.IsDir():
		if err := os.Mkdir(dst, 0o755); err != nil {
			return err
		}
		names, err := readDirNames(src)
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := c.copyStorePath(ctx, filepath.Join(dst, n), filepath.Join(src, n)); err != nil {
				return err
			}
		}
		c.count(func(s *RootStats) { s.Dirs++ })
		return c.finish(dst, 0o555, false)
	}
	return fmt.Errorf("%s: %w (mode %s)", src, ErrFileType, fi.Mode())
}

// copyPlain copies the host tree src (the written boot/) to dst with
// files 0644 and directories 0755.
func (c *copier) copyPlain(dst, src string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("nfsroot: %w", err)
	}
	switch {
	case fi.Mode().IsRegular():
		if _, err := copyFile(dst, src); err != nil {
			return fmt.Errorf("nfsroot: %w", err)
		}
		return c.finish(dst, 0o644, false)
	case fi.IsDir():
		if err := os.Mkdir(dst, 0o755); err != nil {
			return fmt.Errorf("nfsroot: %w", err)
		}
		names, err := readDirNames(src)
		if err != nil {
			return fmt.Errorf("nfsroot: %w", err)
		}
		for _, n := range names {
			if err := c.copyPlain(filepath.Join(dst, n), filepath.Join(src, n)); err != nil {
				return err
			}
		}
		return c.finish(dst, 0o755, false)
	}
	return fmt.Errorf("nfsroot: %s: %w", src, ErrFileType)
}

func (c *copier) count(f func(*RootStats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

// readDirNames returns the names in a directory, sorted.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	sort.Strings(names)
	return names, nil
}

// copyFile copies the regular file src to the new file dst and returns
// the bytes copied.
func copyFile(dst, src string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if err != nil {
		out.Close()
		return 0, fmt.Errorf("copying %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return 0, fmt.Errorf("writing %s: %w", dst, err)
	}
	return n, nil
}
