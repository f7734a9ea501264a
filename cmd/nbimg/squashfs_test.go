package main

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/nixstore/nixstoretest"
)

func squashfsSource(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	testutil.NoError(t, os.MkdirAll(filepath.Join(dir, "etc", "conf.d"), 0o755))
	testutil.NoError(t, os.WriteFile(filepath.Join(dir, "etc", "hostname"), []byte("nbimg\n"), 0o644))
	testutil.NoError(t, os.WriteFile(filepath.Join(dir, "etc", "conf.d", "big"), []byte(strings.Repeat("line of text\n", 5000)), 0o600))
	testutil.NoError(t, os.Symlink("etc/hostname", filepath.Join(dir, "hostname")))
	return dir
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestSquashfsCommandDir(t *testing.T) {
	src := squashfsSource(t)
	out := filepath.Join(t.TempDir(), "root.sqfs")
	var sums [][32]byte
	for _, procs := range []string{"1", "2", "8"} {
		code, stdout, stderr := runApp(t, "--verbose", "squashfs", "-o", out, "--block-size", "4K", "--processors", procs, "--mkfs-time", "7", src)
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if stdout != "" || !strings.Contains(stderr, "root.sqfs:") || !strings.Contains(stderr, "ratio") || !strings.Contains(stderr, "encoder") {
			t.Errorf("stdout %q, stderr %q", stdout, stderr)
		}
		sums = append(sums, fileSum(t, out))
	}
	if sums[0] != sums[1] || sums[1] != sums[2] {
		t.Error("different images for different --processors")
	}
	x := check.UnsquashfsExtract(t, out)
	if got := testutil.ReadFile(t, filepath.Join(x, "etc", "conf.d", "big")); len(got) != 5000*13 {
		t.Errorf("extracted big file has %d bytes", len(got))
	}
	target, err := os.Readlink(filepath.Join(x, "hostname"))
	testutil.NoError(t, err)
	if target != "etc/hostname" {
		t.Errorf("symlink target %q", target)
	}
	// SOURCE_DATE_EPOCH sets the superblock time when --mkfs-time is absent.
	t.Setenv("SOURCE_DATE_EPOCH", "7")
	if code, _, stderr := runApp(t, "--quiet", "squashfs", "-o", out, "--block-size", "4K", src); code != exitOK || stderr != "" {
		t.Fatalf("exit %d: %q", code, stderr)
	}
	if fileSum(t, out) != sums[0] {
		t.Error("SOURCE_DATE_EPOCH=7 and --mkfs-time 7 give different images")
	}
}

func TestSquashfsCommandErrors(t *testing.T) {
	src := squashfsSource(t)
	outDir := t.TempDir()
	out := filepath.Join(outDir, "img")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"squashfs", "-o", out}, exitUsage, "nothing to write"},
		{[]string{"squashfs", "-o", out, "--closure", "x", src}, exitUsage, "not both"},
		{[]string{"squashfs", "-o", out, "--comp", "lz4", src}, exitUsage, "zstd [-Xcompression-level 1..22]"},
		{[]string{"squashfs", "-o", out, "--block-size", "3000", src}, exitUsage, "block-size"},
		{[]string{"squashfs", "-o", out, "--root-mode", "999", src}, exitUsage, "root-mode"},
		{[]string{"squashfs", "-o", out, filepath.Join(src, "missing")}, exitFailure, "missing"},
		{[]string{"squashfs", "-o", out, "--comp", "xz -Xdict-size 50%", src}, exitUsage, "dictionary"},
	} {
		code, _, stderr := runApp(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, tc.code, tc.msg)
		}
		if left, err := os.ReadDir(outDir); err != nil || len(left) != 0 {
			t.Fatalf("%v left %v behind (%v)", tc.args, left, err)
		}
	}
}

func TestSquashfsCommandToplevel(t *testing.T) {
	s := nixstoretest.NixStore(t)
	out := filepath.Join(t.TempDir(), "store.img")
	code, _, stderr := runApp(t, "squashfs", "-o", out, "--toplevel", s.Top, "--comp", "zstd -Xcompression-level 6", "--mkfs-time", "1")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	names := check.UnsquashfsList(t, out)
	if !slices.Contains(names, "nix-path-registration") || !slices.Contains(names, filepath.Base(s.Top)) {
		t.Errorf("listing lacks the registration or the toplevel:\n%s", strings.Join(names, "\n"))
	}

	// The same closure given as closureInfo gives the same image.
	info := s.ClosureInfo
	out2 := filepath.Join(t.TempDir(), "store2.img")
	code, _, stderr = runApp(t, "squashfs", "-o", out2, "--closure", info, "--comp", "zstd -Xcompression-level 6", "--mkfs-time", "1")
	if code != exitOK {
		t.Fatalf("--closure: exit %d: %s", code, stderr)
	}
	if fileSum(t, out) != fileSum(t, out2) {
		t.Error("--toplevel and --closure of the same system give different images")
	}
}
