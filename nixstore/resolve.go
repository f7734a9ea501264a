package nixstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// maxSymlinks bounds symlink chains, as the kernel's limit does.
const maxSymlinks = 40

// hostJoin returns the host path of a path in the store namespace.
func hostJoin(root, p string) string {
	if root == "" {
		return p
	}
	return filepath.Join(root, p)
}

// resolveLogical resolves every symlink in p, an absolute path in the
// namespace whose "/" is root on the host (a chroot store), and returns the
// resolved path in that namespace. Absolute link targets are taken relative
// to root, as they would be after boot.
func resolveLogical(p, root string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("%q is not absolute", p)
	}
	todo := strings.Split(p, "/")
	cur := "/"
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		host := hostJoin(root, next)
		fi, err := os.Lstat(host)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxSymlinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		t, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if path.IsAbs(t) {
			cur = "/"
		}
		todo = append(strings.Split(t, "/"), todo...)
	}
	return cur, nil
}

// ResolveStorePath returns the store path that p names: p may be a store path
// (or a file in one), a path under storeRoot's store directory, or a symlink
// such as nix-build's `result` pointing to one. Symlinks inside the store are
// resolved within storeRoot. The result is in the store namespace (without
// storeRoot).
func ResolveStorePath(p, storeDir, storeRoot string) (string, error) {
	logical, err := resolveToStore(p, storeDir, storeRoot)
	if err != nil {
		return "", err
	}
	sp := storePathOf(logical, storeDir)
	if sp == "" {
		return "", fmt.Errorf("%s leads to %s, which is not in %s", p, logical, storeDir)
	}
	return sp, nil
}

// resolveToStore follows p on the host until it enters the store namespace,
// then resolves the rest within storeRoot. It returns the fully resolved path
// in the store namespace.
func resolveToStore(p, storeDir, storeRoot string) (string, error) {
	orig := p
	if !filepath.IsAbs(p) {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		p = abs
	}
	p = filepath.Clean(p)
	for i := 0; ; i++ {
		if i > maxSymlinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", orig)
		}
		if storeRoot != "" {
			if rest, ok := strings.CutPrefix(p, storeRoot+storeDir+"/"); ok {
				p = storeDir + "/" + rest
			}
		}
		if strings.HasPrefix(p, storeDir+"/") {
			// A store path that is itself a symlink is a store path of its
			// own, kept as it is (Nix keeps the link and, as a
			// reference, its target).
			if storePathOf(p, storeDir) == p {
				if _, err := os.Lstat(hostJoin(storeRoot, p)); err != nil {
					return "", fmt.Errorf("%s: %w", orig, err)
				}
				return p, nil
			}
			r, err := resolveLogical(p, storeRoot)
			if err != nil {
				return "", fmt.Errorf("%s: %w", orig, err)
			}
			return r, nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return "", fmt.Errorf("%s: %w", orig, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				return "", fmt.Errorf("%s: %w", orig, err)
			}
			if real == p {
				return "", fmt.Errorf("%s is not a store path in %s, nor a symlink to one", orig, storeDir)
			}
			p = real
			continue
		}
		t, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(filepath.Dir(p), t)
		}
		p = filepath.Clean(t)
	}
}

// ErrNotNixOS is wrapped by errors about a toplevel that lacks a file every
// NixOS system has.
var ErrNotNixOS = errors.New("nixstore: not a NixOS system")
