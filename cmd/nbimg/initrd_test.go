package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/initrd"
	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/testutil"
)

// initrdInputs writes two odd-sized bases (one a real cpio archive) and an
// image into a new directory.
func initrdInputs(t *testing.T) (dir string, bases []string, image string) {
	t.Helper()
	dir = t.TempDir()
	a, err := initrd.NewArchive(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	testutil.NoError(t, a.AddBytes("init", 0o755, []byte("#!/bin/sh\n")))
	var arch bytes.Buffer
	if _, err := a.WriteTo(&arch); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bases = []string{write("a,b.cpio", arch.Bytes()), write("odd", []byte{0, 0, 0, 0, 0})}
	image = write("store.img", append([]byte("hsqs"), bytes.Repeat([]byte("squash"), 999)...))
	return dir, bases, image
}

// libraryInitrd builds what the command should write, with the library.
func libraryInitrd(t *testing.T, opts initrd.Options, bases []string, image string) []byte {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "want"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := initrd.NewWriter(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bases {
		data := testutil.ReadFile(t, b)
		if _, err := w.AppendBase(bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	data := testutil.ReadFile(t, image)
	if err := w.AppendImage(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b := testutil.ReadFile(t, f.Name())
	return b
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	left, err := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	testutil.NoError(t, err)
	if len(left) > 0 {
		t.Errorf("temporary files left: %q", left)
	}
}

func TestInitrdCommand(t *testing.T) {
	dir, bases, image := initrdInputs(t)
	out := filepath.Join(dir, "initrd")
	code, stdout, stderr := runApp(t, "--verbose", "initrd", "-o", out, "--prepend", bases[0], "--prepend", bases[1], "--squashfs", image)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := libraryInitrd(t, initrd.Options{}, bases, image); !bytes.Equal(got, want) {
		t.Errorf("output (%d bytes) differs from the library's (%d bytes)", len(got), len(want))
	}
	for _, s := range []string{"base initrd " + bases[0] + ": cpio", "base initrd " + bases[1] + ": empty", "segment: none at offset 260", out + ": "} {
		if !strings.Contains(stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, stderr)
		}
	}
	if stdout != "" {
		t.Errorf("stdout %q", stdout)
	}
	st, err := os.Stat(out)
	testutil.NoError(t, err)
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
	assertNoTemp(t, dir)

	// The same again, compressed, with another name and time, quietly.
	code, _, stderr = runApp(t, "--quiet", "initrd", "-o", out, "--prepend", bases[0], "--squashfs", image,
		"--compress", "zstd", "--name", "/boot/store", "--mtime", "1700000000")
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d: %q", code, stderr)
	}
	got = testutil.ReadFile(t, out)
	want := libraryInitrd(t, initrd.Options{Compression: initrd.Zstd, Name: "/boot/store", MTime: time.Unix(1700000000, 0)}, bases[:1], image)
	if !bytes.Equal(got, want) {
		t.Error("compressed output differs from the library's")
	}
	info, err := initrd.Identify(bytes.NewReader(got), int64(len(got)))
	if err != nil || info.Compression() != "cpio + zstd" {
		t.Errorf("Identify: %v, %v", info, err)
	}
	assertNoTemp(t, dir)
}

func TestInitrdCommandErrors(t *testing.T) {
	dir, bases, image := initrdInputs(t)
	out := filepath.Join(dir, "initrd")
	missing := filepath.Join(dir, "no-such-file")
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		message string
	}{
		{"missing image", []string{"--prepend", bases[0], "--squashfs", missing}, exitFailure, "store image: open " + missing},
		{"missing base", []string{"--prepend", missing, "--squashfs", image}, exitFailure, "base initrd: open " + missing},
		{"base is a directory", []string{"--prepend", dir, "--squashfs", image}, exitFailure, "base initrd " + dir + ": not a regular file"},
		{"output is a directory", []string{"--squashfs", image, "-o", dir}, exitFailure, "output " + dir + " is a directory"},
		{"no image", []string{"--prepend", bases[0]}, exitUsage, "--squashfs"},
		{"bad compression", []string{"--squashfs", image, "--compress", "lz4"}, exitUsage, "unknown compression \"lz4\""},
		{"bad name", []string{"--squashfs", image, "--name", "/"}, exitUsage, "--name"},
		{"bad mtime", []string{"--squashfs", image, "--mtime", "-1"}, exitUsage, "--mtime"},
		{"extra argument", []string{"--squashfs", image, "stray"}, exitUsage, "stray"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testutil.NoError(t, os.WriteFile(out, []byte("previous"), 0o644))
			args := append([]string{"initrd", "-o", out}, tc.args...)
			code, _, stderr := runApp(t, args...)
			if code != tc.code || !strings.Contains(stderr, tc.message) {
				t.Errorf("exit %d, want %d; stderr %q lacks %q", code, tc.code, stderr, tc.message)
			}
			if b := testutil.ReadFile(t, out); string(b) != "previous" {
				t.Errorf("output replaced on failure: %q", b)
			}
			assertNoTemp(t, dir)
		})
	}
}

// TestInitrdFromClosure builds the store image from the fixture's closure
// straight into the segment: the result is the initrd netboot writes, and
// the image in it is one unsquashfs reads.
func TestInitrdFromClosure(t *testing.T) {
	f := testutil.LoadFixture(t)
	nb := buildNetboot(t, f)
	out := filepath.Join(t.TempDir(), "initrd")
	code, _, errOut := runApp(t, "--quiet", "initrd", "-o", out, "--toplevel", f.Toplevel,
		"--closure", f.ClosureDir, "--comp", "zstd -Xcompression-level 3")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	_, got := digest(t, out)
	_, want := digest(t, filepath.Join(nb, "initrd"))
	if got != want {
		t.Fatal("nbimg initrd --toplevel differs from the initrd nbimg netboot writes")
	}
	base := testutil.ReadFile(t, f.Initrd)
	ird := testutil.ReadFile(t, out)
	seg := ird[(len(base)+3)&^3:]
	// The newc header of the image is 110 bytes plus its name padded to 4.
	i := bytes.Index(seg, []byte("nix-store.squashfs\x00"))
	if i < 0 {
		t.Fatal("segment has no nix-store.squashfs")
	}
	body := (i + len("nix-store.squashfs\x00") + 3) &^ 3
	img := filepath.Join(t.TempDir(), "store.img")
	if err := os.WriteFile(img, seg[body:], 0o644); err != nil {
		t.Fatal(err)
	}
	names := check.UnsquashfsList(t, img)
	for _, p := range f.StorePaths(t) {
		if !slices.Contains(names, filepath.Base(p)) {
			t.Errorf("image lacks %s", p)
		}
	}
}
