package nixstore_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/nixstore"
	"github.com/nbimg/nbimg/nixstore/nixstoretest"
)

// These tests build small store paths with real Nix (nixstore/testdata/store.nix)
// and check nbimg's NAR serialisation, scanner and registration against what
// Nix itself records.

func TestWriteNARMatchesNixDump(t *testing.T) {
	s := nixstoretest.NixStore(t)
	nixStore := testutil.Tool(t, "nix-store", "nix-bin")
	paths := []string{s.Unrelated}
	for _, g := range s.Graph {
		paths = append(paths, g.Path)
	}
	for _, p := range paths {
		want, err := exec.Command(nixStore, "--dump", p).Output()
		if err != nil {
			t.Fatalf("nix-store --dump %s: %v", p, err)
		}
		var got bytes.Buffer
		if err := nixstore.WriteNAR(&got, p); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: NAR differs from nix-store --dump (%d vs %d bytes)", p, got.Len(), len(want))
		}
	}
	for _, g := range s.Graph {
		h, n, err := nixstore.NarHash(g.Path)
		if err != nil {
			t.Fatal(err)
		}
		if h != g.NarHash || n != g.NarSize {
			t.Errorf("%s: NarHash = %s %d, Nix has %s %d", g.Path, h, n, g.NarHash, g.NarSize)
		}
	}
}

func TestNarHashMatchesNixHash(t *testing.T) {
	s := nixstoretest.NixStore(t)
	nixHash := testutil.Tool(t, "nix-hash", "nix-bin")
	out, err := exec.Command(nixHash, "--type", "sha256", "--base32", s.Top).Output()
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := nixstore.NarHash(s.Top)
	if err != nil {
		t.Fatal(err)
	}
	if want := "sha256:" + strings.TrimSpace(string(out)); h != want {
		t.Fatalf("NarHash = %s, nix-hash says %s", h, want)
	}
}

func checkClosure(t *testing.T, what string, c *nixstore.Closure, s *nixstoretest.Store) {
	t.Helper()
	if got := c.Registration(); !bytes.Equal(got, s.Registration) {
		t.Errorf("%s: registration differs from Nix's closureInfo:\n--- got\n%s\n--- want\n%s", what, got, s.Registration)
	}
	if got := c.StorePaths(); !bytes.Equal(got, s.StorePaths) {
		t.Errorf("%s: store-paths differ:\n%s\nwant\n%s", what, got, s.StorePaths)
	}
	if got := strconv.FormatUint(c.NarSize(), 10) + "\n"; got != string(s.TotalNarSize) {
		t.Errorf("%s: NarSize %s, want %s", what, got, s.TotalNarSize)
	}
}

func TestScanMatchesNix(t *testing.T) {
	s := nixstoretest.NixStore(t)
	for _, workers := range []int{1, 3} {
		c, err := nixstore.Scan(context.Background(), []string{s.Top}, nixstore.ScanOptions{Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		checkClosure(t, "scan with "+strconv.Itoa(workers)+" workers", c, s)
	}
}

func TestLoadToplevel(t *testing.T) {
	s := nixstoretest.NixStore(t)
	check := func(what string, c *nixstore.Closure) {
		t.Helper()
		checkClosure(t, what, c, s)
		tl := c.Toplevel
		if tl == nil {
			t.Fatalf("%s: no toplevel", what)
		}
		if tl.Path != s.Top || tl.Label != "nixos-system-test-24.05" {
			t.Errorf("%s: toplevel %s label %q", what, tl.Path, tl.Label)
		}
		if !strings.HasSuffix(tl.Kernel, "-linux-6.1/bzImage") || !strings.HasSuffix(tl.Initrd, "-initrd-linux-6.1/initrd") ||
			!strings.HasSuffix(tl.Init, "-stage-2-init.sh") || !strings.HasSuffix(tl.DTBs, "-linux-6.1/dtbs") {
			t.Errorf("%s: toplevel links resolved to %+v", what, tl)
		}
		if !slices.Equal(tl.KernelParams, []string{"console=ttyS0", "loglevel=4"}) {
			t.Errorf("%s: kernel params %q", what, tl.KernelParams)
		}
		for _, p := range []string{tl.Kernel, tl.Initrd, tl.Init, tl.DTBs} {
			sp := p[:len("/nix/store/")+32]
			if !slices.ContainsFunc(c.Paths, func(pi nixstore.PathInfo) bool { return strings.HasPrefix(pi.Path, sp) }) {
				t.Errorf("%s: %s is outside the closure", what, p)
			}
		}
	}
	ctx := context.Background()

	// A result symlink, as nix-build leaves it.
	result := filepath.Join(t.TempDir(), "result")
	if err := os.Symlink(s.Top, result); err != nil {
		t.Fatal(err)
	}
	c, err := nixstore.Load(ctx, nixstore.Input{Toplevel: result})
	if err != nil {
		t.Fatal(err)
	}
	check("nix-store", c)
	if c.Paths[0].Deriver == "" {
		t.Errorf("nix-store --dump-db gave no deriver for %s", c.Paths[0].Path)
	}

	restore := nixstore.SetNixStoreProgram("")
	c, err = nixstore.Load(ctx, nixstore.Input{Toplevel: s.Top})
	restore()
	if err != nil {
		t.Fatal(err)
	}
	check("scanner", c)

	dir := s.ClosureInfo
	c, err = nixstore.Load(ctx, nixstore.Input{Closure: dir, Toplevel: s.Top})
	if err != nil {
		t.Fatal(err)
	}
	check("closureInfo", c)
	c, err = nixstore.Load(ctx, nixstore.Input{Closure: filepath.Join(dir, "registration"), Toplevel: result})
	if err != nil {
		t.Fatal(err)
	}
	check("registration file", c)
}

// copyClosure copies the test closure into root/nix/store.
func copyClosure(t *testing.T, s *nixstoretest.Store, root string) {
	t.Helper()
	var paths []string
	for _, g := range s.Graph {
		paths = append(paths, g.Path)
	}
	testutil.CopyStore(t, root, paths)
}

// TestStoreRootLoadsIntoNix reads a copy of the closure under --store-root
// (where the host's /nix/store does not have it) and has Nix load the
// registration into that chroot store and verify every path's contents.
func TestStoreRootLoadsIntoNix(t *testing.T) {
	s := nixstoretest.NixStore(t)
	root := t.TempDir()
	copyClosure(t, s, root)
	// Name the toplevel by its host path under the root.
	top := filepath.Join(root, s.Top)
	c, err := nixstore.Scan(context.Background(), []string{s.Top}, nixstore.ScanOptions{StoreRoot: root, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	checkClosure(t, "scan under store root", c, s)
	reg := filepath.Join(t.TempDir(), "registration")
	if err := os.WriteFile(reg, c.Registration(), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := nixstore.Load(context.Background(), nixstore.Input{Closure: reg, Toplevel: top, StoreRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if l.Toplevel.Path != s.Top || l.HostPath(l.Toplevel.Kernel) != filepath.Join(root, l.Toplevel.Kernel) {
		t.Errorf("toplevel under store root: %+v", l.Toplevel)
	}

	got := check.NixLoadVerify(t, root, c.Registration(), s.Top)
	if want := strings.Fields(string(s.StorePaths)); !slices.Equal(got, want) {
		t.Errorf("closure in the loaded database: %q, want %q", got, want)
	}
}

// TestLoadFixture reads the fixture system (testdata/fixture) every way Load
// can and checks each against the closureInfo its build made with Nix.
func TestLoadFixture(t *testing.T) {
	f := testutil.LoadFixture(t)
	want := map[string][]byte{}
	for _, n := range []string{"store-paths", "registration", "total-nar-size"} {
		b, err := os.ReadFile(filepath.Join(f.ClosureDir, n))
		if err != nil {
			t.Fatal(err)
		}
		want[n] = b
	}
	initTarget, err := filepath.EvalSymlinks(f.Init)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	check := func(what string, in nixstore.Input) {
		t.Helper()
		c, err := nixstore.Load(ctx, in)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for n, data := range c.ClosureInfoFiles() {
			if !bytes.Equal(data, want[n]) {
				t.Errorf("%s: %s differs from the fixture's:\n--- got\n%s\n--- want\n%s", what, n, data, want[n])
			}
		}
		tl := c.Toplevel
		if tl.Path != f.Toplevel || tl.Kernel != f.Kernel || tl.Initrd != f.Initrd || tl.Init != initTarget || tl.InitArg() != f.Init ||
			strings.Join(tl.KernelParams, " ") != strings.Join(strings.Fields(f.KernelParams), " ") {
			t.Errorf("%s: toplevel %+v, fixture %+v", what, tl, f)
		}
	}
	result := filepath.Join(f.Dir, "toplevel")
	check("closureInfo", nixstore.Input{Closure: f.ClosureDir, Toplevel: result})
	check("nix-store", nixstore.Input{Toplevel: result})
	restore := nixstore.SetNixStoreProgram("")
	defer restore()
	check("scanner", nixstore.Input{Toplevel: f.Toplevel})
}
