package nixstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSymlinkStorePathRoot: a root that is a store path holding only a
// symlink to another store path keeps both, as Nix does, also when it is
// reached through a link outside the store (nix-build's result).
func TestSymlinkStorePathRoot(t *testing.T) {
	target := "/nix/store/1a2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-pkg"
	link := "/nix/store/2b2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-pkg-link"
	root := fakeStore(t, map[string]func(string){
		target + "/bin/x": mkfile("x", 0o755),
		link:              mklink(target),
	})
	result := filepath.Join(t.TempDir(), "result")
	if err := os.Symlink(filepath.Join(root, link), result); err != nil {
		t.Fatal(err)
	}
	for _, given := range []string{link, result} {
		sp, err := ResolveStorePath(given, DefaultStoreDir, root)
		if err != nil || sp != link {
			t.Fatalf("ResolveStorePath(%s) = %q, %v; want %s", given, sp, err, link)
		}
	}
	c, err := Scan(context.Background(), []string{link}, ScanOptions{StoreRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range c.Paths {
		got = append(got, p.Path)
	}
	if want := []string{target, link}; !slices.Equal(got, want) {
		t.Fatalf("closure %v, want %v", got, want)
	}
	if info, _ := c.Lookup(link); !slices.Equal(info.References, []string{target}) {
		t.Errorf("references of the link: %v", info.References)
	}
}

// TestToplevelThroughSymlinkStorePath: --toplevel given as a store path
// that links to the system works with the computed closure and with a
// closureInfo of the system alone.
func TestToplevelThroughSymlinkStorePath(t *testing.T) {
	root := t.TempDir()
	top := "/nix/store/3d2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-nixos-system-x-1"
	link := "/nix/store/6d2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-system-link"
	mkNixOS(t, root, top)
	mklink(top)(filepath.Join(root, link))
	ctx := context.Background()
	c, err := Load(ctx, Input{Toplevel: link, StoreRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Lookup(link); !ok {
		t.Errorf("the link %s was dropped from the closure", link)
	}
	if _, ok := c.Lookup(top); !ok || c.Toplevel == nil {
		t.Fatalf("closure %+v lacks the system", c.Paths)
	}
	// A closureInfo of the system only.
	sys, err := Scan(ctx, []string{top}, ScanOptions{StoreRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	reg := filepath.Join(t.TempDir(), "registration")
	if err := os.WriteFile(reg, sys.Registration(), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = Load(ctx, Input{Toplevel: link, Closure: reg, StoreRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if c.Toplevel.Path != top {
		t.Errorf("toplevel %s, want %s", c.Toplevel.Path, top)
	}
}

func TestEmptyRegistrationRefused(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "registration")
	if err := os.WriteFile(reg, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{reg, dir} {
		_, err := Load(context.Background(), Input{Closure: in})
		var re *RegistrationError
		if !errors.Is(err, ErrEmptyRegistration) || !errors.As(err, &re) || re.File != reg {
			t.Errorf("%s: %v", in, err)
		}
	}
}

// TestInitOutsideClosureRefused: a closure file that holds the toplevel
// but not the path its init is in is refused, naming the init.
func TestInitOutsideClosureRefused(t *testing.T) {
	root := t.TempDir()
	top := "/nix/store/3d2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-nixos-system-x-1"
	initPath := "/nix/store/7d2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-stage-2-init"
	mkNixOS(t, root, top)
	h := filepath.Join(root, top, "init")
	if err := os.Remove(h); err != nil {
		t.Fatal(err)
	}
	mkfile("#!/bin/sh\n", 0o755)(filepath.Join(root, initPath))
	mklink(initPath)(h)
	ctx := context.Background()
	full, err := Scan(ctx, []string{top}, ScanOptions{StoreRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	var partial Closure
	for _, p := range full.Paths {
		if p.Path != initPath {
			p.References = slices.DeleteFunc(slices.Clone(p.References), func(r string) bool { return r == initPath })
			partial.Paths = append(partial.Paths, p)
		}
	}
	if len(partial.Paths) != len(full.Paths)-1 {
		t.Fatalf("init %s not in the scanned closure %+v", initPath, full.Paths)
	}
	reg := filepath.Join(t.TempDir(), "registration")
	if err := os.WriteFile(reg, partial.Registration(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(ctx, Input{Toplevel: top, Closure: reg, StoreRoot: root}); err == nil || !strings.Contains(err.Error(), initPath) {
		t.Errorf("init outside the closure: %v", err)
	}
	if _, err := Load(ctx, Input{Toplevel: top, StoreRoot: root}); err != nil {
		t.Errorf("full closure: %v", err)
	}
}

// TestHungNixStoreStopsOnCancel: a nix-store that never answers does not
// keep the command from stopping when it is interrupted.
func TestHungNixStoreStopsOnCancel(t *testing.T) {
	bin := t.TempDir()
	prog := filepath.Join(bin, "nix-store")
	mkfile("#!/bin/sh\nsleep 300 &\nsleep 300\n", 0o755)(prog)
	saved := nixStoreProgram
	defer func() { nixStoreProgram = saved }()
	nixStoreProgram = prog
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := NixStoreClosure(ctx, []string{"/nix/store/3d2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-x"})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stopping took %s", d)
	}
}
