package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// TestCacheFlag builds the fixture's netboot directory without a cache,
// with a cold one ($NBIMG_CACHE) and a warm one (--cache): the files are
// the same, and --verbose and manifest.json tell the hits and misses.
// A second system that differs in its toplevel, whose closure nbimg
// computes itself, reuses every other store path.
func TestCacheFlag(t *testing.T) {
	f := testutil.LoadFixture(t)
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	t.Setenv("NBIMG_CACHE", "")
	paths := len(f.StorePaths(t))
	dir := t.TempDir()

	none := buildNetboot(t, f, "--processors", "1")
	t.Setenv("NBIMG_CACHE", dir)
	cold := buildNetboot(t, f, "--processors", "2")
	t.Setenv("NBIMG_CACHE", "")
	args := []string{"--verbose", "netboot", "-o", filepath.Join(t.TempDir(), "warm"), "--toplevel", f.Toplevel,
		"--closure", f.ClosureDir, "--comp", "zstd -Xcompression-level 3", "--processors", "3", "--cache", dir}
	code, _, stderr := runApp(t, args...)
	if code != exitOK {
		t.Fatalf("warm netboot: exit %d: %s", code, stderr)
	}
	warm := args[3]
	for _, n := range []string{"bzImage", "initrd", "netboot.ipxe"} {
		_, a := digest(t, filepath.Join(none, n))
		_, b := digest(t, filepath.Join(cold, n))
		_, c := digest(t, filepath.Join(warm, n))
		if a != b || a != c {
			t.Errorf("%s differs between no cache, a cold cache and a warm one", n)
		}
	}
	if m := readManifest(t, none); m.Cache != nil {
		t.Errorf("manifest without a cache has cache figures %+v", *m.Cache)
	}
	mc := readManifest(t, cold).Cache
	if mc == nil || mc.Misses != mc.StorePaths || mc.Hits != 0 || mc.Stored != mc.StorePaths || mc.StorePaths < paths-2 {
		t.Fatalf("cold cache manifest: %+v (closure of %d paths)", mc, paths)
	}
	mw := readManifest(t, warm).Cache
	if mw == nil || mw.Hits != mc.StorePaths || mw.Misses != 0 || mw.ReusedBytes == 0 {
		t.Fatalf("warm cache manifest: %+v", mw)
	}
	want := "cache: " + itoa(mc.StorePaths) + " of " + itoa(mc.StorePaths) + " store paths reused"
	if !strings.Contains(stderr, want) {
		t.Errorf("--verbose does not say %q:\n%s", want, stderr)
	}

	// The store image alone, from the same cache.
	img := filepath.Join(t.TempDir(), "store.img")
	code, _, stderr = runApp(t, "--verbose", "squashfs", "-o", img, "--closure", f.ClosureDir,
		"--comp", "zstd -Xcompression-level 3", "--cache", dir)
	if code != exitOK || !strings.Contains(stderr, want) {
		t.Fatalf("squashfs --cache: exit %d, want %q in:\n%s", code, want, stderr)
	}

	// A second generation: only its toplevel is compressed.
	root := copyFixtureStore(t, f)
	top := secondGeneration(t, f, root)
	code, _, stderr = runApp(t, "--verbose", "squashfs", "-o", img, "--toplevel", root+top, "--store-root", root,
		"--comp", "zstd -Xcompression-level 3", "--cache", dir)
	want2 := "cache: " + itoa(mc.StorePaths-1) + " of " + itoa(mc.StorePaths) + " store paths reused"
	if code != exitOK || !strings.Contains(stderr, want2) || !strings.Contains(stderr, "1 compressed, 1 entries stored") {
		t.Fatalf("second generation: exit %d, want %q in:\n%s", code, want2, stderr)
	}
	checkStoreImage(t, img, root)

	// stats and prune.
	code, stdout, stderr := runApp(t, "cache", "stats", "--cache", dir)
	if code != exitOK || !strings.Contains(stdout, "entries    "+itoa(mc.StorePaths+1)+"\n") {
		t.Fatalf("cache stats: exit %d: %s%s", code, stdout, stderr)
	}
	t.Setenv("NBIMG_CACHE", dir)
	code, _, stderr = runApp(t, "cache", "prune", "--max-size", "0")
	if code != exitOK || !strings.Contains(stderr, "removed "+itoa(mc.StorePaths+1)+" entries") {
		t.Fatalf("cache prune: exit %d: %s", code, stderr)
	}
	if code, stdout, _ = runApp(t, "cache", "stats"); code != exitOK || !strings.Contains(stdout, "entries    0\n") {
		t.Fatalf("cache stats after prune: exit %d: %s", code, stdout)
	}
}

func TestCacheCommandErrors(t *testing.T) {
	t.Setenv("NBIMG_CACHE", "")
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"cache", "stats"}, exitUsage, "NBIMG_CACHE"},
		{[]string{"cache", "prune", "--cache", dir}, exitUsage, "--max-size"},
		{[]string{"cache", "prune", "--cache", dir, "--max-size", "5X"}, exitUsage, "--max-size"},
		{[]string{"cache", "prune", "--cache", dir, "--max-size", "-1"}, exitUsage, "--max-size"},
		{[]string{"cache", "prune", "--cache", dir, "--older-than", "-5h"}, exitUsage, "--older-than"},
		{[]string{"cache", "prune", "--cache", dir, "--max-size", "5G", "--older-than", "720h"}, exitOK, ""},
	} {
		code, _, stderr := runApp(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) || tc.code != exitOK && strings.Count(stderr, "\n") > 2 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "512": 512, "4k": 4 << 10, "5G": 5 << 30, "2T": 2 << 40} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "1.5G", "-1", "5P", "99999999999T"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// checkStoreImage extracts a store image with unsquashfs and compares each
// store path in it with the store under root (diff -r, symlinks as links).
func checkStoreImage(t *testing.T, img, root string) {
	t.Helper()
	unsq := testutil.Tool(t, "unsquashfs", "squashfs-tools")
	x := filepath.Join(t.TempDir(), "x")
	if b, err := exec.Command(unsq, "-no-progress", "-d", x, img).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs: %v\n%s", err, b)
	}
	entries, err := os.ReadDir(x)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Name() == "nix-path-registration" {
			continue
		}
		n++
		if b, err := exec.Command("diff", "-r", "--no-dereference", filepath.Join(x, e.Name()), filepath.Join(root, "nix", "store", e.Name())).CombinedOutput(); err != nil {
			t.Errorf("store path %s differs from the image: %v\n%.2000s", e.Name(), err, b)
		}
	}
	if n == 0 {
		t.Error("the image holds no store path")
	}
}
