package nixstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Toplevel is a NixOS system (system.build.toplevel): the store path that
// links to the kernel, the initrd and the stage-2 init.
type Toplevel struct {
	Path         string   // the system's store path
	Kernel       string   // resolved path of `kernel` (e.g. .../bzImage)
	Initrd       string   // resolved path of `initrd`
	Init         string   // resolved path of `init` (NixOS's stage 2); see InitArg
	KernelParams []string // the words of `kernel-params`; none when it is absent
	DTBs         string   // resolved directory of `dtbs`, "" when absent
	Label        string   // base name without the hash, e.g. nixos-system-NAME-VERSION

	// Optional files of a NixOS toplevel, "" when absent.
	Version       string // content of `nixos-version`, trimmed, e.g. "24.05.20240101.abcdef"
	System        string // content of `system`, trimmed, e.g. "x86_64-linux"
	Firmware      string // resolved directory of `firmware`
	KernelModules string // resolved directory of `kernel-modules` (holds lib/modules/<version>)

	// Arch is the system's architecture: from `system`, else from the
	// kernel's header (see DetectArch).
	Arch Arch
}

// InitArg returns what NixOS puts after init= on the kernel command line:
// the toplevel's own `init` link, <Path>/init, rather than its target, so
// the command line names the system (as netboot.ipxe and boot menus do).
func (t *Toplevel) InitArg() string { return t.Path + "/init" }

// ReadToplevel reads the NixOS system at p: a store path, or a symlink to one
// such as nix-build's `result`. With storeRoot, store paths are read from
// storeRoot/nix/store and links in the store resolved within storeRoot.
// All returned paths are in the store namespace, as they are after boot.
func ReadToplevel(p, storeRoot string) (*Toplevel, error) {
	root, err := cleanStoreRoot(storeRoot)
	if err != nil {
		return nil, err
	}
	logical, err := resolveToStore(p, DefaultStoreDir, root)
	if err != nil {
		return nil, fmt.Errorf("toplevel: %w", err)
	}
	sp := storePathOf(logical, DefaultStoreDir)
	if sp != logical {
		return nil, fmt.Errorf("toplevel %s leads to %s, which is not a store path", p, logical)
	}
	t := &Toplevel{Path: sp, Label: path.Base(sp)[hashPartLen+1:]}
	file := func(name string, dir bool) (string, error) {
		r, err := resolveLogical(sp+"/"+name, root)
		if err != nil {
			return "", err
		}
		if storePathOf(r, DefaultStoreDir) == "" {
			return "", fmt.Errorf("toplevel %s: %s leads to %s, outside the store", sp, name, r)
		}
		st, err := os.Stat(hostJoin(root, r))
		if err != nil {
			return "", fmt.Errorf("toplevel %s: %s: %w", sp, name, err)
		}
		if st.IsDir() != dir {
			want := "a file"
			if dir {
				want = "a directory"
			}
			return "", fmt.Errorf("toplevel %s: %s (%s) is not %s", sp, name, r, want)
		}
		return r, nil
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"kernel", &t.Kernel}, {"initrd", &t.Initrd}, {"init", &t.Init}} {
		v, err := file(f.name, false)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("toplevel %s has no %s: %w (is it a system.build.toplevel?)", sp, f.name, ErrNotNixOS)
		}
		if err != nil {
			return nil, err
		}
		*f.dst = v
	}
	params, err := os.ReadFile(hostJoin(root, sp+"/kernel-params"))
	switch {
	case err == nil:
		t.KernelParams = strings.Fields(string(params))
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("toplevel %s: %w", sp, err)
	}
	for _, d := range []struct {
		name string
		dst  *string
	}{{"dtbs", &t.DTBs}, {"firmware", &t.Firmware}, {"kernel-modules", &t.KernelModules}} {
		if _, err := os.Lstat(hostJoin(root, sp+"/"+d.name)); err == nil {
			if *d.dst, err = file(d.name, true); err != nil {
				return nil, err
			}
		}
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"nixos-version", &t.Version}, {"system", &t.System}} {
		b, err := os.ReadFile(hostJoin(root, sp+"/"+f.name))
		switch {
		case err == nil:
			v := strings.TrimSpace(string(b))
			if strings.ContainsAny(v, "\n\r\x00") {
				return nil, fmt.Errorf("toplevel %s: %s holds more than one line", sp, f.name)
			}
			*f.dst = v
		case errors.Is(err, fs.ErrNotExist):
		default:
			return nil, fmt.Errorf("toplevel %s: %w", sp, err)
		}
	}
	hdr, err := readKernelHeader(hostJoin(root, t.Kernel))
	if err != nil {
		return nil, fmt.Errorf("toplevel %s: kernel: %w", sp, err)
	}
	if t.Arch, err = DetectArch(t.System, hdr); err != nil {
		return nil, fmt.Errorf("toplevel %s: %w", sp, err)
	}
	return t, nil
}
