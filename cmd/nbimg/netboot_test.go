package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
)

// buildNetboot runs `nbimg netboot` on the fixture into a new directory.
func buildNetboot(t *testing.T, f *testutil.Fixture, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "netboot")
	args := append([]string{"--quiet", "netboot", "-o", dir, "--toplevel", f.Toplevel,
		"--closure", f.ClosureDir, "--comp", "zstd -Xcompression-level 3"}, extra...)
	code, _, errOut := runApp(t, args...)
	if code != exitOK {
		t.Fatalf("nbimg %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return dir
}

func readManifest(t *testing.T, dir string) builder.Manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m builder.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	return m
}

// ipxeCmdline is the kernel command line netboot.ipxe gives with an empty
// ${cmdline}.
func ipxeCmdline(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "netboot.ipxe"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		// kernel --name NAME NAME ARGS... ${cmdline}
		w := strings.Fields(l)
		if len(w) >= 4 && w[0] == "kernel" && w[1] == "--name" && w[2] == w[3] {
			return strings.TrimSpace(strings.TrimSuffix(strings.Join(w[4:], " "), "${cmdline}"))
		}
	}
	t.Fatalf("netboot.ipxe has no kernel line:\n%s", b)
	return ""
}

func TestNetbootOutputs(t *testing.T) {
	f := testutil.LoadFixture(t)
	dir := buildNetboot(t, f)
	m := readManifest(t, dir)

	want := "init=" + f.Init + " initrd=initrd " + f.KernelParams
	if got := ipxeCmdline(t, dir); got != want {
		t.Errorf("netboot.ipxe command line\n got %q\nwant %q", got, want)
	}
	if m.Inputs.Cmdline != want {
		t.Errorf("manifest kernel_cmdline %q, want %q", m.Inputs.Cmdline, want)
	}
	if m.Inputs.Arch != "x86_64" {
		t.Errorf("manifest arch %q, want x86_64", m.Inputs.Arch)
	}
	if m.Inputs.Toplevel != f.Toplevel || m.Inputs.StorePaths != len(f.StorePaths(t)) {
		t.Errorf("manifest inputs %+v do not describe %s", m.Inputs, f.Toplevel)
	}
	var names []string
	for _, o := range m.Outputs {
		names = append(names, o.Name)
		_, sum := digest(t, filepath.Join(dir, o.Name))
		if sum != o.SHA256 {
			t.Errorf("manifest sha256 of %s is %s, file has %s", o.Name, o.SHA256, sum)
		}
	}
	if strings.Join(names, " ") != "bzImage initrd netboot.ipxe" {
		t.Errorf("manifest outputs %v", names)
	}
	if m.Timings != nil {
		t.Errorf("manifest has timings without --timings: %+v", m.Timings)
	}
	kernel := testutil.ReadFile(t, f.Kernel)
	if got := testutil.ReadFile(t, filepath.Join(dir, "bzImage")); !bytes.Equal(got, kernel) {
		t.Error("bzImage differs from the toplevel's kernel")
	}

	// The initrd starts with the base unchanged; the appended segment, at
	// the next 4-byte boundary, is read by cpio and bsdtar.
	base := testutil.ReadFile(t, f.Initrd)
	ird := testutil.ReadFile(t, filepath.Join(dir, "initrd"))
	if !bytes.HasPrefix(ird, base) {
		t.Fatal("initrd does not start with the toplevel's initrd")
	}
	seg := ird[(len(base)+3)&^3:]
	for tool, names := range map[string][]string{"cpio": check.CpioList(t, seg, false), "bsdtar": check.BsdtarList(t, seg)} {
		if len(names) != 1 || names[0] != "nix-store.squashfs" {
			t.Errorf("%s lists %q, want only nix-store.squashfs", tool, names)
		}
	}
}

func TestNetbootReproducible(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	forEachFixture(t, func(t *testing.T, f *testutil.Fixture) {
		a := buildNetboot(t, f, "--processors", "1")
		b := buildNetboot(t, f, "--processors", "3")
		for _, n := range []string{netbootKernel(f), "initrd", "netboot.ipxe"} {
			_, sa := digest(t, filepath.Join(a, n))
			_, sb := digest(t, filepath.Join(b, n))
			if sa != sb {
				t.Errorf("%s differs between --processors 1 and 3", n)
			}
		}
		sameManifest(t, a, b)
		if ma := readManifest(t, a); ma.Settings.MkfsTime != 1700000000 {
			t.Errorf("mkfs_time %d, want SOURCE_DATE_EPOCH", ma.Settings.MkfsTime)
		}
	})
}

func TestNetbootBootsDirect(t *testing.T) {
	skipShort(t)
	f := testutil.LoadFixture(t)
	qemu.Require(t)
	for _, compress := range []string{"none", "zstd"} {
		t.Run(compress, func(t *testing.T) {
			dir := buildNetboot(t, f, "--compress", compress)
			res := qemu.BootT(t, qemu.Config{
				Kernel:      filepath.Join(dir, "bzImage"),
				Initrd:      filepath.Join(dir, "initrd"),
				Cmdline:     ipxeCmdline(t, dir),
				Marker:      f.Marker,
				FailMarkers: []string{f.FailMarker},
			})
			if !strings.Contains(res.Line, "check=sha256") {
				t.Errorf("the marker %q does not follow a full store check", res.Line)
			}
		})
	}
}

func TestNetbootBootsIPXE(t *testing.T) {
	skipShort(t)
	f := testutil.LoadFixture(t)
	qemu.RequireNetboot(t)
	for _, compress := range []string{"none", "zstd"} {
		t.Run(compress, func(t *testing.T) {
			dir := buildNetboot(t, f, "--compress", compress)
			res := qemu.BootT(t, qemu.Config{
				TFTPDir:     dir,
				BootFile:    "netboot.ipxe",
				Marker:      f.Marker,
				FailMarkers: []string{f.FailMarker},
			})
			if !strings.Contains(res.Line, "check=sha256") {
				t.Errorf("the marker %q does not follow a full store check", res.Line)
			}
		})
	}
}

func TestNetbootBadInput(t *testing.T) {
	f := testutil.LoadFixture(t)
	tmp := t.TempDir()
	noKernel := filepath.Join(tmp, "root")
	// A toplevel without kernel, under a store root of its own.
	top := filepath.Join(noKernel, "nix/store/00000000000000000000000000000000-nixos-system-broken")
	if err := os.MkdirAll(top, 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.NoError(t, os.WriteFile(filepath.Join(top, "init"), []byte("#!/bin/sh\n"), 0o755))
	reg := filepath.Join(tmp, "registration")
	testutil.NoError(t, os.WriteFile(reg, []byte(top[len(noKernel):]+"\nsha256:0000000000000000000000000000000000000000000000000000\n0\n\n0\n"), 0o644))
	missing := filepath.Join(tmp, "missing")
	testutil.NoError(t, os.WriteFile(missing, []byte("/nix/store/11111111111111111111111111111111-gone\nsha256:0000000000000000000000000000000000000000000000000000\n0\n\n0\n"), 0o644))

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"toplevel without kernel", []string{"--toplevel", top[len(noKernel):], "--closure", reg, "--store-root", noKernel}, "kernel"},
		{"missing store path", []string{"--toplevel", f.Toplevel, "--closure", missing}, "gone"},
		{"unreadable base initrd", []string{"--toplevel", f.Toplevel, "--closure", f.ClosureDir, "--initrd", filepath.Join(tmp, "no-initrd")}, "no-initrd"},
		{"bad compressor", []string{"--toplevel", f.Toplevel, "--closure", f.ClosureDir, "--comp", "lzo"}, "lzo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			out := filepath.Join(parent, "netboot")
			code, _, errOut := runApp(t, append([]string{"netboot", "-o", out}, tc.args...)...)
			if code == exitOK {
				t.Fatal("succeeded")
			}
			if !strings.Contains(errOut, tc.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 1 {
				t.Errorf("error does not name %q in one line: %q", tc.want, errOut)
			}
			if left, err := os.ReadDir(parent); err != nil || len(left) != 0 {
				t.Errorf("left behind: %v (%v)", left, err)
			}
		})
	}
}

// sameManifest checks that two builds wrote the same manifest.json, byte
// for byte.
func sameManifest(t *testing.T, a, b string) {
	t.Helper()
	ja, err := os.ReadFile(filepath.Join(a, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	jb, err := os.ReadFile(filepath.Join(b, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ja, jb) {
		t.Errorf("manifest.json differs between two builds:\n%s\n%s", ja, jb)
	}
}

// digest returns the size and hex sha256 of a file.
func digest(t *testing.T, name string) (int, string) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return len(b), fmt.Sprintf("%x", sha256.Sum256(b))
}

func TestNetbootTimingsOnRequest(t *testing.T) {
	f := testutil.LoadFixture(t)
	dir := filepath.Join(t.TempDir(), "netboot")
	code, _, errOut := runApp(t, "--quiet", "--timings", "netboot", "-o", dir, "--toplevel", f.Toplevel,
		"--closure", f.ClosureDir, "--comp", "zstd -Xcompression-level 1")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	m := readManifest(t, dir)
	if m.Timings == nil || m.Timings.Total <= 0 || m.Timings.Squashfs <= 0 || m.Timings.Squashfs > m.Timings.Total {
		t.Errorf("--timings: manifest timings %+v", m.Timings)
	}
}
