package testutil

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReadFixtureNotBuilt(t *testing.T) {
	_, err := ReadFixture(t.TempDir())
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadFixture(empty dir) = %v, want an error wrapping os.ErrNotExist", err)
	}
}

// fakeFixture lays out what build.sh writes, with a directory standing in
// for the store path.
func fakeFixture(t *testing.T) (dir, top string) {
	t.Helper()
	dir = t.TempDir()
	top = filepath.Join(dir, "store", "xxx-nixos-system-fixture-1.0")
	for _, d := range []string{top, filepath.Join(dir, "closure")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range map[string]string{
		filepath.Join(top, "bzImage"):              "kernel",
		filepath.Join(top, "initrd"):               "initrd",
		filepath.Join(top, "init"):                 "#!/bin/sh\n",
		filepath.Join(top, "system"):               "x86_64-linux",
		filepath.Join(dir, "closure/store-paths"):  top + "\n",
		filepath.Join(dir, "closure/registration"): top + "\n",
		filepath.Join(dir, "fixture.env"): "# comment\n" +
			"TOPLEVEL='" + top + "'\n" +
			"KERNEL='" + top + "/bzImage'\n" +
			"INITRD='" + top + "/initrd'\n" +
			"INIT='" + top + "/init'\n" +
			"KERNEL_PARAMS='console=ttyS0 panic=-1'\n" +
			"OK_MARKER=OK-MARK\n" +
			"FAIL_MARKER='FAIL-MARK'\n",
	} {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(top, filepath.Join(dir, "toplevel")); err != nil {
		t.Fatal(err)
	}
	return dir, top
}

func TestReadFixture(t *testing.T) {
	dir, top := fakeFixture(t)
	f, err := ReadFixture(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Fixture{
		Dir: dir, Toplevel: top, ClosureDir: filepath.Join(dir, "closure"), System: "x86_64-linux",
		Kernel: top + "/bzImage", Initrd: top + "/initrd", Init: top + "/init",
		KernelParams: "console=ttyS0 panic=-1", Marker: "OK-MARK", FailMarker: "FAIL-MARK",
	}
	if *f != want {
		t.Errorf("ReadFixture =\n%+v\nwant\n%+v", *f, want)
	}
	if got, want := f.Cmdline(), "init="+top+"/init console=ttyS0 panic=-1"; got != want {
		t.Errorf("Cmdline() = %q, want %q", got, want)
	}
	if got := f.StorePaths(t); !slices.Equal(got, []string{top}) {
		t.Errorf("StorePaths() = %q", got)
	}

	// References appear when both files exist.
	if err := os.MkdirAll(filepath.Join(dir, "reference"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"nix-store.squashfs", "initrd"} {
		if err := os.WriteFile(filepath.Join(dir, "reference", n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if f, err = ReadFixture(dir); err != nil {
		t.Fatal(err)
	}
	if f.RefSquashfs == "" || f.RefInitrd == "" {
		t.Errorf("references not found: %+v", f)
	}
}

func TestReadFixtureStale(t *testing.T) {
	dir, _ := fakeFixture(t)
	other := filepath.Join(dir, "store", "yyy-nixos-system-fixture-1.0")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "toplevel")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, filepath.Join(dir, "toplevel")); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFixture(dir); err == nil || !strings.Contains(err.Error(), "stale") {
		t.Errorf("ReadFixture with a moved toplevel link = %v, want a stale error", err)
	}
}

// TestLoadFixture checks the real fixture system, when built.
func TestLoadFixture(t *testing.T) {
	f := LoadFixture(t)
	paths := f.StorePaths(t)
	if !slices.IsSorted(paths) {
		t.Errorf("store-paths not sorted")
	}
	if !slices.Contains(paths, f.Toplevel) {
		t.Errorf("store-paths lacks the toplevel %s", f.Toplevel)
	}
	params, err := os.ReadFile(filepath.Join(f.Toplevel, "kernel-params"))
	if err != nil {
		t.Fatal(err)
	}
	if string(params) != f.KernelParams {
		t.Errorf("KernelParams = %q, toplevel has %q", f.KernelParams, params)
	}
	reg, err := os.ReadFile(filepath.Join(f.ClosureDir, "registration"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(reg), "\n") || strings.HasSuffix(string(reg), "\n\n") {
		t.Errorf("registration must end with exactly one newline")
	}
	if !strings.HasPrefix(string(reg), paths[0]+"\nsha256:") {
		t.Errorf("registration does not start with %s and its sha256 hash", paths[0])
	}
	if strings.Contains(f.KernelParams, f.Marker) || strings.Contains(f.KernelParams, f.FailMarker) {
		t.Errorf("kernel-params contain a marker; the console echo would match it")
	}
}
