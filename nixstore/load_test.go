package nixstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// fakeStore makes root/nix/store with the given entries: name -> func
// filling the host path.
func fakeStore(t *testing.T, entries map[string]func(host string)) string {
	t.Helper()
	root := t.TempDir()
	for sp, fill := range entries {
		fill(filepath.Join(root, sp))
	}
	return root
}

func mkfile(data string, mode os.FileMode) func(string) {
	return func(p string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			panic(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			panic(err)
		}
	}
}

func mklink(target string) func(string) {
	return func(p string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			panic(err)
		}
		if err := os.Symlink(target, p); err != nil {
			panic(err)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	root := fakeStore(t, map[string]func(string){
		pA: mkfile("a", 0o644),
	})
	dir := t.TempDir()
	regFile := filepath.Join(dir, "registration")
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		testutil.NoError(t, os.WriteFile(p, []byte(data), 0o644))
		return p
	}
	ctx := context.Background()

	if _, err := Load(ctx, Input{}); !errors.Is(err, ErrNoInput) {
		t.Errorf("no input: %v", err)
	}

	write("registration", reg(pA, h1, "1", "", "0", pB, h1, "1", "", "1", pA))
	_, err := Load(ctx, Input{Closure: dir, StoreRoot: root})
	var re *RegistrationError
	if !errors.As(err, &re) || !errors.Is(err, ErrMissingPath) || re.Line != 6 || re.File != regFile || !strings.Contains(err.Error(), pB) {
		t.Errorf("missing path: %v", err)
	}

	write("registration", reg(pA, h1, "1", "", "0"))
	write("store-paths", pA+"\n"+pB+"\n")
	_, err = Load(ctx, Input{Closure: dir, StoreRoot: root})
	if !errors.As(err, &re) || re.Line != 2 || !strings.Contains(err.Error(), "store-paths:2: "+pB+" is not in the registration") {
		t.Errorf("store-paths with an extra path: %v", err)
	}
	write("store-paths", "")
	if _, err = Load(ctx, Input{Closure: dir, StoreRoot: root}); err == nil || !strings.Contains(err.Error(), "not listed here") {
		t.Errorf("store-paths without a path: %v", err)
	}
	write("store-paths", pA+"\n")
	write("total-nar-size", "2\n")
	if _, err = Load(ctx, Input{Closure: dir, StoreRoot: root}); err == nil || !strings.Contains(err.Error(), "total-nar-size:1: total 2 differs") {
		t.Errorf("wrong total-nar-size: %v", err)
	}
	write("total-nar-size", "1\n")
	c, err := Load(ctx, Input{Closure: dir, StoreRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if c.StoreDir != "/nix/store" || c.StoreRoot != root || c.HostPath(pA) != filepath.Join(root, pA) || c.NarSize() != 1 {
		t.Errorf("closure %+v", c)
	}

	if _, err = Load(ctx, Input{Closure: filepath.Join(dir, "nope")}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing closure: %v", err)
	}
	empty := t.TempDir()
	if _, err = Load(ctx, Input{Closure: empty}); err == nil || !strings.Contains(err.Error(), "closureInfo") {
		t.Errorf("directory without registration: %v", err)
	}
	if _, err = Load(ctx, Input{Closure: dir, StoreRoot: regFile}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("store root is a file: %v", err)
	}
	// A toplevel that is not in the given closure.
	top := "/nix/store/3d2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-nixos-system-x-1"
	mkNixOS(t, root, top)
	_, err = Load(ctx, Input{Closure: dir, Toplevel: top, StoreRoot: root})
	if err == nil || !strings.Contains(err.Error(), "not in the closure") {
		t.Errorf("toplevel outside the closure: %v", err)
	}
}

// mkNixOS makes a NixOS-shaped toplevel under root whose links point to
// other store paths, with absolute and relative targets.
func mkNixOS(t *testing.T, root, top string) {
	t.Helper()
	kern := "/nix/store/4a2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-linux-6.1"
	ird := "/nix/store/5f2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-initrd"
	h := func(p string) string { return filepath.Join(root, p) }
	mkfile("k", 0o644)(h(kern + "/bzImage"))
	mkfile("d", 0o644)(h(kern + "/dtbs/x.dtb"))
	mkfile("i", 0o644)(h(ird + "/initrd"))
	mklink(kern + "/bzImage")(h(top + "/kernel"))
	mklink("../" + filepath.Base(ird) + "/initrd")(h(top + "/initrd"))
	mkfile("#!/bin/sh\n", 0o755)(h(top + "/init"))
	mklink(kern + "/dtbs")(h(top + "/dtbs"))
	mkfile(" quiet\n  loglevel=4 \n", 0o644)(h(top + "/kernel-params"))
}

func TestReadToplevel(t *testing.T) {
	root := t.TempDir()
	top := "/nix/store/3d2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-nixos-system-x-1"
	mkNixOS(t, root, top)
	result := filepath.Join(t.TempDir(), "result")
	testutil.NoError(t, os.Symlink(top, result)) // a result link into the chroot's store
	for _, in := range []string{top, top + "/", filepath.Join(root, top), result} {
		tl, err := ReadToplevel(in, root)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		want := Toplevel{
			Path:         top,
			Kernel:       "/nix/store/4a2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-linux-6.1/bzImage",
			Initrd:       "/nix/store/5f2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-initrd/initrd",
			Init:         top + "/init",
			KernelParams: []string{"quiet", "loglevel=4"},
			DTBs:         "/nix/store/4a2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-linux-6.1/dtbs",
			Label:        "nixos-system-x-1",
		}
		if tl.Path != want.Path || tl.Kernel != want.Kernel || tl.Initrd != want.Initrd || tl.Init != want.Init ||
			strings.Join(tl.KernelParams, " ") != strings.Join(want.KernelParams, " ") || tl.DTBs != want.DTBs || tl.Label != want.Label {
			t.Errorf("%s:\n got %+v\nwant %+v", in, *tl, want)
		}
	}

	// Without dtbs and kernel-params.
	testutil.NoError(t, os.Remove(filepath.Join(root, top, "dtbs")))
	testutil.NoError(t, os.Remove(filepath.Join(root, top, "kernel-params")))
	tl, err := ReadToplevel(top, root)
	if err != nil || tl.DTBs != "" || len(tl.KernelParams) != 0 {
		t.Errorf("minimal toplevel: %+v %v", tl, err)
	}

	// Not a NixOS system.
	testutil.NoError(t, os.Remove(filepath.Join(root, top, "init")))
	if _, err := ReadToplevel(top, root); !errors.Is(err, ErrNotNixOS) || !strings.Contains(err.Error(), "no init") {
		t.Errorf("without init: %v", err)
	}
	// A link leaving the store.
	mklink("/etc/passwd")(filepath.Join(root, top, "init"))
	mkfile("x", 0o644)(filepath.Join(root, "etc/passwd"))
	if _, err := ReadToplevel(top, root); err == nil || !strings.Contains(err.Error(), "outside the store") {
		t.Errorf("init outside the store: %v", err)
	}
	// Not a store path at all.
	if _, err := ReadToplevel(root, root); err == nil || !strings.Contains(err.Error(), "not a store path") {
		t.Errorf("plain directory: %v", err)
	}
	if _, err := ReadToplevel(top+"/kernel", root); err == nil || !strings.Contains(err.Error(), "not a store path") {
		t.Errorf("a file in a store path: %v", err)
	}
}

func TestRefScannerAcrossWrites(t *testing.T) {
	hashes := map[string]string{hashPart(pA): pA, hashPart(pB): pB, hashPart(pC): pC}
	data := []byte("xx" + pA + "yy/nix/store/" + hashPart(pB)[:31] + "!" + strings.Repeat("z", 40) + hashPart(pC))
	for chunk := 1; chunk <= len(data); chunk++ {
		s := newRefScanner(hashes)
		for i := 0; i < len(data); i += chunk {
			if _, err := s.Write(data[i:min(i+chunk, len(data))]); err != nil {
				t.Fatal(err)
			}
		}
		if len(s.found) != 2 || !s.found[pA] || !s.found[pC] {
			t.Fatalf("chunk %d: found %v", chunk, s.found)
		}
	}
}

// TestRefScannerRandom compares the scanner with a plain search on random
// text made mostly of nix32 digits, written in random pieces.
func TestRefScannerRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var parts []string
	hashes := map[string]string{}
	for i := range 20 {
		b := make([]byte, 20)
		for k := range b {
			b[k] = byte(rng.Uint32())
		}
		h := Nix32Encode(b)
		parts = append(parts, h)
		hashes[h] = fmt.Sprint("p", i)
	}
	for round := range 200 {
		var data []byte
		for range 30 {
			switch rng.IntN(3) {
			case 0:
				data = append(data, parts[rng.IntN(len(parts))]...)
			case 1:
				data = append(data, nix32Alphabet[rng.IntN(32)])
			default:
				data = append(data, "-/\x00e"[rng.IntN(4)])
			}
		}
		want := map[string]bool{}
		for i := 0; i+hashPartLen <= len(data); i++ {
			if p, ok := hashes[string(data[i:i+hashPartLen])]; ok {
				want[p] = true
			}
		}
		s := newRefScanner(hashes)
		for i := 0; i < len(data); {
			n := min(1+rng.IntN(70), len(data)-i)
			if _, err := s.Write(data[i : i+n]); err != nil {
				t.Fatal(err)
			}
			i += n
		}
		if !maps.Equal(s.found, want) {
			t.Fatalf("round %d: found %v, want %v in %q", round, s.found, want, data)
		}
	}
}

func TestScanFakeStore(t *testing.T) {
	// Paths named by hash only: references through contents, a symlink
	// target, a file name and a self-reference; one path never referred to.
	pD := "/nix/store/6g2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-d"
	pE := "/nix/store/7h2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-e"
	root := fakeStore(t, map[string]func(string){
		pA:                          mkfile("uses "+pB+"/bin and self "+pA, 0o755),
		pB + "/link":                mklink(pC + "/lib"),
		pC + "/lib/" + hashPart(pD): mkfile("", 0o644),
		pD:                          mkfile("leaf", 0o644),
		pE:                          mkfile("unrelated "+pA, 0o644),
		"/nix/store/.links/x":       mkfile("", 0o644),
		pA + ".lock":                mkfile("", 0o600),
	})
	c, err := Scan(context.Background(), []string{pA}, ScanOptions{StoreRoot: root, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	nar := func(p string) []string {
		h, n, err := NarHash(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return []string{p, h, strconv.FormatUint(n, 10), ""}
	}
	var lines []string
	lines = append(append(lines, nar(pA)...), "2", pA, pB)
	lines = append(append(lines, nar(pB)...), "1", pC)
	lines = append(append(lines, nar(pC)...), "1", pD)
	lines = append(append(lines, nar(pD)...), "0")
	if got, want := c.Registration(), reg(lines...); string(got) != want {
		t.Fatalf("registration:\n%s\nwant\n%s", got, want)
	}
	if _, err := Scan(context.Background(), []string{pE + "x"}, ScanOptions{StoreRoot: root}); !errors.Is(err, ErrMissingPath) {
		t.Errorf("missing root: %v", err)
	}
	if _, err := Scan(context.Background(), []string{pA}, ScanOptions{StoreRoot: t.TempDir()}); err == nil {
		t.Errorf("scan of an empty store succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Scan(ctx, []string{pA}, ScanOptions{StoreRoot: root}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled scan: %v", err)
	}
}

func TestWriteNARRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Skip(err)
	}
	err := WriteNAR(io.Discard, dir)
	if err == nil || !strings.Contains(err.Error(), "cannot be in the Nix store") {
		t.Fatalf("fifo: %v", err)
	}
}

// TestLoadFallsBackToScan runs Load with a nix-store that does not know the
// toplevel, and with one that fails otherwise.
func TestLoadFallsBackToScan(t *testing.T) {
	root := t.TempDir()
	top := "/nix/store/3d2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-nixos-system-x-1"
	mkNixOS(t, root, top)
	bin := t.TempDir()
	script := func(body string) string {
		p := filepath.Join(bin, "nix-store")
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		mkfile("#!/bin/sh\n"+body+"\n", 0o755)(p)
		return p
	}
	saved := nixStoreProgram
	defer func() { nixStoreProgram = saved }()
	ctx := context.Background()

	// The toplevel is only under root: the fake nix-store would be used
	// only without a store root, so test the dispatch directly.
	nixStoreProgram = script(`echo "error: path '$3' is not valid" >&2; exit 1`)
	if _, err := NixStoreClosure(ctx, []string{top}); !errors.Is(err, errNotValid) {
		t.Errorf("invalid path: %v", err)
	}
	nixStoreProgram = script(`echo "error: database is locked" >&2; exit 1`)
	_, err := NixStoreClosure(ctx, []string{top})
	if err == nil || errors.Is(err, errNotValid) || !strings.Contains(err.Error(), "database is locked") {
		t.Errorf("other failure: %v", err)
	}
	nixStoreProgram = filepath.Join(bin, "missing")
	if _, err := NixStoreClosure(ctx, []string{top}); !errors.Is(err, errNoNixStore) {
		t.Errorf("no nix-store: %v", err)
	}
	c, err := Load(ctx, Input{Toplevel: top, StoreRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Paths) != 3 || c.Toplevel == nil || c.Toplevel.Path != top {
		t.Errorf("scanned closure: %+v", c)
	}
}
