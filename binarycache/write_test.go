package binarycache_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/nbimg/nbimg/binarycache"
	"github.com/nbimg/nbimg/nixstore"
)

// store is a small synthetic store: a, b refers to a, c refers to a, b and
// itself, and d (a later generation) refers to c.
type store struct {
	root  string // host directory holding nix/store
	paths map[string]binarycache.Path
}

func fakeStorePath(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "/nix/store/" + nixstore.Nix32Encode(sum[:20]) + "-" + name
}

func newStore(t testing.TB) *store {
	t.Helper()
	s := &store{root: t.TempDir(), paths: map[string]binarycache.Path{}}
	a, b, c, d := fakeStorePath("a"), fakeStorePath("b-1.0"), fakeStorePath("c"), fakeStorePath("d")
	s.add(t, a, nil, map[string]string{"file": strings.Repeat("a", 5000)})
	s.add(t, b, []string{a}, map[string]string{"bin/b": "#!" + a + "/file\n", "share/doc": "b"})
	s.add(t, c, []string{a, b, c}, map[string]string{"lib": a + b + c, "empty": ""})
	s.add(t, d, []string{c}, map[string]string{"x": c})
	if err := os.Symlink(b+"/bin/b", s.host(c)+"/link"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(s.host(b)+"/bin/b", 0o755); err != nil {
		t.Fatal(err)
	}
	for sp, p := range s.paths {
		h, n, err := nixstore.NarHash(s.host(sp))
		if err != nil {
			t.Fatal(err)
		}
		p.NarHash, p.NarSize = h, n
		s.paths[sp] = p
	}
	return s
}

func (s *store) host(sp string) string { return filepath.Join(s.root, sp) }

func (s *store) add(t testing.TB, sp string, refs []string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(s.host(sp), name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.paths[sp] = binarycache.Path{StorePath: sp, HostPath: s.host(sp), References: refs, Deriver: fakeStorePath(path.Base(sp)[33:] + ".drv")}
}

// closure returns the paths named (by name part), sorted by store path.
func (s *store) closure(names ...string) []binarycache.Path {
	var out []binarycache.Path
	for _, n := range names {
		out = append(out, s.paths[fakeStorePath(n)])
	}
	slices.SortFunc(out, func(a, b binarycache.Path) int { return strings.Compare(a.StorePath, b.StorePath) })
	return out
}

func readNarInfo(t testing.TB, dir, storePath string) *binarycache.NarInfo {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, path.Base(storePath)[:32]+".narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := binarycache.ParseNarInfo(data, "/nix/store")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// decompress reads a NAR file of the cache with decoders independent of
// the writer's (klauspost's zstd decoder also reads libzstd's frames).
func decompress(t testing.TB, dir string, n *binarycache.NarInfo) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, n.URL))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if got := "sha256:" + nixstore.Nix32Encode(sum[:]); got != n.FileHash || uint64(len(data)) != n.FileSize {
		t.Fatalf("%s: file hash %s size %d, narinfo says %s %d", n.URL, got, len(data), n.FileHash, n.FileSize)
	}
	if want := "nar/" + strings.TrimPrefix(n.FileHash, "sha256:"); !strings.HasPrefix(n.URL, want+".nar") {
		t.Fatalf("URL %s is not named by the file hash %s", n.URL, n.FileHash)
	}
	var r io.Reader
	switch n.Compression {
	case "xz":
		r, err = xz.NewReader(bytes.NewReader(data))
	case "zstd":
		var d *zstd.Decoder
		d, err = zstd.NewReader(bytes.NewReader(data))
		if err == nil {
			defer d.Close()
		}
		r = d
	case "none":
		r = bytes.NewReader(data)
	default:
		t.Fatalf("compression %q", n.Compression)
	}
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", n.URL, err)
	}
	return out
}

func opts(c binarycache.Compression, workers int, keys ...binarycache.SecretKey) binarycache.Options {
	return binarycache.Options{Compression: c, Workers: workers, Keys: keys, WriteNAR: nixstore.WriteNAR}
}

func TestWrite(t *testing.T) {
	s := newStore(t)
	key := testKey(t, "cache.test-1")
	for _, c := range []binarycache.Compression{binarycache.XZ, binarycache.Zstd, binarycache.None} {
		t.Run(string(c), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cache")
			var progress []binarycache.Progress
			o := opts(c, 2, key)
			o.Progress = func(p binarycache.Progress) { progress = append(progress, p) }
			m, err := binarycache.Write(context.Background(), dir, s.closure("a", "b-1.0", "c"), o)
			if err != nil {
				t.Fatal(err)
			}
			ci, err := os.ReadFile(filepath.Join(dir, "nix-cache-info"))
			if err != nil {
				t.Fatal(err)
			}
			if string(ci) != "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n" {
				t.Fatalf("nix-cache-info %q", ci)
			}
			for _, p := range s.closure("a", "b-1.0", "c") {
				n := readNarInfo(t, dir, p.StorePath)
				var want bytes.Buffer
				if err := nixstore.WriteNAR(&want, p.HostPath); err != nil {
					t.Fatal(err)
				}
				if got := decompress(t, dir, n); !bytes.Equal(got, want.Bytes()) {
					t.Fatalf("%s: NAR differs from nixstore.WriteNAR's", p.StorePath)
				}
				if n.StorePath != p.StorePath || n.NarHash != p.NarHash || n.NarSize != p.NarSize || n.Compression != string(c) {
					t.Fatalf("narinfo %+v for %+v", n, p)
				}
				var refs []string
				for _, r := range p.References {
					refs = append(refs, path.Base(r))
				}
				slices.Sort(refs)
				if !slices.Equal(n.References, refs) {
					t.Fatalf("references %q, want %q", n.References, refs)
				}
				if n.Deriver != path.Base(p.Deriver) {
					t.Fatalf("deriver %q, want %q", n.Deriver, path.Base(p.Deriver))
				}
				if !n.SignedBy(key.Public()) || len(n.Sigs) != 1 {
					t.Fatalf("signatures %q", n.Sigs)
				}
			}
			if len(m.Added) != 3 || m.Kept != 0 || m.Paths != 3 || m.Keys[0] != key.Public().String() {
				t.Fatalf("manifest %+v", m)
			}
			if len(progress) != 3 || progress[2].Paths != 3 || progress[2].Added != 3 || progress[2].NarBytes != m.AddedNarSize {
				t.Fatalf("progress %+v", progress)
			}
			var onDisk binarycache.Manifest
			data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &onDisk); err != nil {
				t.Fatal(err)
			}
			if len(onDisk.Added) != 3 || onDisk.Added[0].StorePath != s.closure("a", "b-1.0", "c")[0].StorePath {
				t.Fatalf("manifest.json %s", data)
			}
			assertNoTemp(t, dir)
		})
	}
}

func assertNoTemp(t testing.TB, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// treeDigest maps each file of dir to its sha256.
func treeDigest(t testing.TB, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		out[rel] = sha256.Sum256(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReproducible(t *testing.T) {
	s := newStore(t)
	key := testKey(t, "k")
	for _, c := range []binarycache.Compression{binarycache.XZ, binarycache.Zstd} {
		d1, d4 := filepath.Join(t.TempDir(), "c1"), filepath.Join(t.TempDir(), "c4")
		if _, err := binarycache.Write(context.Background(), d1, s.closure("a", "b-1.0", "c", "d"), opts(c, 1, key)); err != nil {
			t.Fatal(err)
		}
		if _, err := binarycache.Write(context.Background(), d4, s.closure("a", "b-1.0", "c", "d"), opts(c, 4, key)); err != nil {
			t.Fatal(err)
		}
		if g1, g4 := treeDigest(t, d1), treeDigest(t, d4); len(g1) != 4*2+2 || !mapsEqual(g1, g4) {
			t.Fatalf("%s: 1 and 4 workers differ or wrong file count: %d and %d files", c, len(g1), len(g4))
		}
		// One input byte changed: that path's files change, the others not.
		if err := os.WriteFile(s.host(fakeStorePath("a"))+"/file", []byte(strings.Repeat("b", 5000)), 0o644); err != nil {
			t.Fatal(err)
		}
		changed := s.closure("a", "b-1.0", "c", "d")
		changed[slices.IndexFunc(changed, func(p binarycache.Path) bool { return p.StorePath == fakeStorePath("a") })].NarHash = ""
		d2 := filepath.Join(t.TempDir(), "c2")
		if _, err := binarycache.Write(context.Background(), d2, changed, opts(c, 2, key)); err != nil {
			t.Fatal(err)
		}
		g1, g2 := treeDigest(t, d1), treeDigest(t, d2)
		var differ []string
		for name, sum := range g1 {
			if g2[name] != sum {
				differ = append(differ, name)
			}
		}
		slices.Sort(differ)
		// a's narinfo, its NAR (under a new name, so "missing"), manifest.json.
		a := path.Base(fakeStorePath("a"))[:32] + ".narinfo"
		if len(differ) != 3 || !slices.Contains(differ, a) || !slices.Contains(differ, "manifest.json") {
			t.Fatalf("%s: after changing a, these files differ: %q", c, differ)
		}
		if err := os.WriteFile(s.host(fakeStorePath("a"))+"/file", []byte(strings.Repeat("a", 5000)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func mapsEqual(a, b map[string][32]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestExtend(t *testing.T) {
	s := newStore(t)
	key := testKey(t, "k")
	dir := filepath.Join(t.TempDir(), "cache")
	if _, err := binarycache.Write(context.Background(), dir, s.closure("a", "b-1.0", "c"), opts(binarycache.XZ, 2, key)); err != nil {
		t.Fatal(err)
	}
	before := treeDigest(t, dir)
	st, err := os.Stat(filepath.Join(dir, path.Base(fakeStorePath("a"))[:32]+".narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	// The next generation: d is new, the rest is kept untouched.
	m, err := binarycache.Write(context.Background(), dir, s.closure("a", "b-1.0", "c", "d"), opts(binarycache.XZ, 2, key))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Added) != 1 || m.Added[0].StorePath != fakeStorePath("d") || m.Kept != 3 {
		t.Fatalf("manifest %+v", m)
	}
	after := treeDigest(t, dir)
	for name, sum := range before {
		if name != "manifest.json" && after[name] != sum {
			t.Fatalf("%s changed when the cache was extended", name)
		}
	}
	st2, err := os.Stat(filepath.Join(dir, path.Base(fakeStorePath("a"))[:32]+".narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(st, st2) {
		t.Fatal("a kept narinfo was rewritten")
	}
	// d alone: its references are in the cache already.
	if _, err := binarycache.Write(context.Background(), dir, s.closure("d"), opts(binarycache.Zstd, 1, key)); err != nil {
		t.Fatal(err)
	}
	// A second key signs the kept paths without touching their NARs.
	key2 := testKey(t, "k2")
	m, err = binarycache.Write(context.Background(), dir, s.closure("a", "b-1.0", "c", "d"), opts(binarycache.XZ, 2, key, key2))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Added) != 0 || len(m.Resigned) != 4 {
		t.Fatalf("manifest after adding a key: %+v", m)
	}
	for _, p := range s.closure("a", "b-1.0", "c", "d") {
		n := readNarInfo(t, dir, p.StorePath)
		if !n.SignedBy(key.Public()) || !n.SignedBy(key2.Public()) {
			t.Fatalf("%s: sigs %q", p.StorePath, n.Sigs)
		}
	}
	// A narinfo whose NAR file went missing is rewritten.
	n := readNarInfo(t, dir, fakeStorePath("c"))
	if err := os.Remove(filepath.Join(dir, n.URL)); err != nil {
		t.Fatal(err)
	}
	var logged []string
	o := opts(binarycache.XZ, 2, key, key2)
	o.Logf = func(f string, a ...any) { logged = append(logged, f) }
	m, err = binarycache.Write(context.Background(), dir, s.closure("a", "b-1.0", "c", "d"), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Added) != 1 || m.Added[0].StorePath != fakeStorePath("c") || len(logged) != 1 {
		t.Fatalf("after removing c's NAR: manifest %+v, log %q", m, logged)
	}
	decompress(t, dir, readNarInfo(t, dir, fakeStorePath("c")))
	assertNoTemp(t, dir)
}

func TestWriteErrors(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()

	// A path that changed on disk since its registration.
	bad := s.closure("a")
	bad[0].NarSize++
	dir := filepath.Join(t.TempDir(), "cache")
	if _, err := binarycache.Write(ctx, dir, bad, opts(binarycache.XZ, 1)); !errors.Is(err, binarycache.ErrChanged) {
		t.Fatalf("changed path: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, path.Base(fakeStorePath("a"))[:32]+".narinfo")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a narinfo was written for a changed path: %v", err)
	}
	assertNoTemp(t, dir)

	// A reference neither given nor in the cache.
	if _, err := binarycache.Write(ctx, filepath.Join(t.TempDir(), "c"), s.closure("b-1.0"), opts(binarycache.XZ, 1)); !errors.Is(err, binarycache.ErrIncomplete) {
		t.Fatalf("incomplete closure: %v", err)
	}

	// A cache of another store directory.
	other := filepath.Join(t.TempDir(), "other")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "nix-cache-info"), []byte("StoreDir: /gnu/store\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := binarycache.Write(ctx, other, s.closure("a"), opts(binarycache.XZ, 1)); err == nil || !strings.Contains(err.Error(), "/gnu/store") {
		t.Fatalf("other store directory: %v", err)
	}

	// Options.
	for _, tc := range []struct {
		name string
		o    binarycache.Options
	}{
		{"level for xz", binarycache.Options{WriteNAR: nixstore.WriteNAR, Level: 3}},
		{"zstd level 23", binarycache.Options{WriteNAR: nixstore.WriteNAR, Compression: binarycache.Zstd, Level: 23}},
		{"unknown compression", binarycache.Options{WriteNAR: nixstore.WriteNAR, Compression: "bzip2"}},
		{"same key twice", opts(binarycache.XZ, 1, testKey(t, "k"), testKey(t, "k"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := binarycache.Write(ctx, filepath.Join(t.TempDir(), "c"), s.closure("a"), tc.o); err == nil {
				t.Fatal("no error")
			}
		})
	}

	// A cancelled context stops the work and leaves no temporary files.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	dir = filepath.Join(t.TempDir(), "cancelled")
	if _, err := binarycache.Write(cctx, dir, s.closure("a", "b-1.0", "c"), opts(binarycache.XZ, 2)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	assertNoTemp(t, dir)
}
