package squashfs_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbimg/nbimg/cache"
	"github.com/nbimg/nbimg/squashfs"
)

// unitSources writes six store-path-like sources and a registration file
// under a new directory (mode 0777, like a root with several sources) and
// returns the paths of the sources, the registration last: text, random, sparse-looking (all-zero) and
// empty files around the block size, duplicates inside a unit and across
// units (larger and smaller than a block), a single-file unit and a unit
// with no data at all.
func unitSources(t testing.TB, bs int) (root string, srcs []string) {
	t.Helper()
	root = t.TempDir()
	if err := os.Chmod(root, 0o777); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	text := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = "abcdefgh \n"[rng.IntN(10)]
		}
		return b
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	shared := text(3*bs + 77) // in several units
	sharedSmall := text(300)
	var dirs []string
	for u := range 6 {
		d := filepath.Join(root, fmt.Sprintf("%032d-unit%d", u, u))
		dirs = append(dirs, d)
		write := func(p string, data []byte) {
			t.Helper()
			p = filepath.Join(d, p)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		switch u {
		case 4: // a store path that is one file
			if err := os.WriteFile(d, text(2*bs+5), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		case 5: // no data: an empty file and a symlink
			write("empty", nil)
			if err := os.Symlink("empty", filepath.Join(d, "link")); err != nil {
				t.Fatal(err)
			}
			continue
		}
		for i, n := range []int{1, 100, bs - 1, bs, bs + 1, 2*bs + 3000} {
			write(fmt.Sprintf("lib/text-%d", i), text(n))
			write(fmt.Sprintf("lib/random-%d", i), random(n))
		}
		write("zero", make([]byte, 2*bs+10))
		write("share/big", shared)
		write("share/small", sharedSmall)
		write("share/again/big", shared) // a duplicate inside the unit too
		write("bin/tool", text(5000+u))
	}
	reg := filepath.Join(root, "registration")
	if err := os.WriteFile(reg, []byte("regs\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	return root, append(dirs, reg)
}

// unitTree lays out the sources as a store image does: each at the root
// under its base name, as a unit named by name(path), but the
// registration, which is in no unit.
func unitTree(t testing.TB, srcs []string, name func(string) string) *squashfs.Tree {
	t.Helper()
	tree, err := squashfs.DirTree(context.Background(), srcs...)
	if err != nil {
		t.Fatal(err)
	}
	tree.Root.Mtime = 1
	byName := map[string]string{}
	for _, d := range srcs {
		byName[filepath.Base(d)] = d
	}
	for _, n := range tree.Root.Children {
		if n.Name != "registration" {
			n.Unit = name(byName[n.Name])
		}
	}
	return tree
}

func unitName(p string) string { return "narhash-of-" + filepath.Base(p) }

func openCache(t testing.TB, dir string) *cache.Dir {
	t.Helper()
	c, err := cache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var unitOpts = squashfs.Options{BlockSize: testBlock, MkfsTime: time.Unix(9, 0), AllRoot: true, NoHardlinks: true}

// TestCacheSameBytes builds images of units with no cache, a cold cache
// and a warm one at several processor counts and checks they are
// byte-identical, that the warm build reads no unit's files, and that
// changing one unit compresses that unit only.
func TestCacheSameBytes(t *testing.T) {
	root, dirs := unitSources(t, testBlock)
	opts := unitOpts
	opts.Processors = 1
	ref, st := writeImage(t, unitTree(t, dirs, unitName), opts)
	want := sha(t, ref)
	if st.Units != 5 || st.CacheHits+st.CacheMisses != 0 {
		t.Fatalf("no cache: %d units, %d hits, %d misses; want 5, 0, 0", st.Units, st.CacheHits, st.CacheMisses)
	}
	if st.Duplicates < 4 {
		t.Errorf("only %d duplicates found", st.Duplicates)
	}
	checkUnsquashfs(t, ref, root)
	allTime := opts
	allTime.AllTime = time.Unix(1000, 0)
	timed, _ := writeImage(t, unitTree(t, dirs, unitName), allTime)
	checkSqfsdiff(t, timed, dirs, "-comp", "zstd", "-all-root", "-no-hardlinks", "-b", fmt.Sprint(testBlock), "-all-time", "1000", "-mkfs-time", "9")

	dir := t.TempDir()
	opts.Cache = openCache(t, dir)
	opts.Processors = 2
	cold, st := writeImage(t, unitTree(t, dirs, unitName), opts)
	if got := sha(t, cold); got != want {
		t.Fatalf("cold cache: image differs from the one without a cache")
	}
	if st.CacheMisses != 5 || st.CacheStored != 5 || st.CacheHits != 0 {
		t.Fatalf("cold cache: %d misses, %d stored, %d hits; want 5, 5, 0", st.CacheMisses, st.CacheStored, st.CacheHits)
	}
	for _, procs := range []int{1, 2, 7} {
		opts.Processors = procs
		warm, st := writeImage(t, unitTree(t, dirs, unitName), opts)
		if got := sha(t, warm); got != want {
			t.Fatalf("warm cache, processors %d: image differs", procs)
		}
		if st.CacheHits != 5 || st.CacheMisses != 0 || st.CacheStored != 0 || st.CacheReusedBytes == 0 || st.CacheReadBytes == 0 {
			t.Fatalf("warm cache, processors %d: stats %+v", procs, st)
		}
	}

	// A warm build does not read the files of the units it copies: they
	// may be gone once the tree is made.
	tree := unitTree(t, dirs, unitName)
	moved := t.TempDir()
	units := dirs[:len(dirs)-1]
	for _, d := range units {
		if err := os.Rename(d, filepath.Join(moved, filepath.Base(d))); err != nil {
			t.Fatal(err)
		}
	}
	gone, _ := writeImage(t, tree, opts)
	if sha(t, gone) != want {
		t.Fatal("warm build without the source files: image differs")
	}
	for _, d := range units {
		if err := os.Rename(filepath.Join(moved, filepath.Base(d)), d); err != nil {
			t.Fatal(err)
		}
	}

	// One unit changes (a byte of a file, and its name): only it is
	// compressed, and the image equals one made without a cache.
	p := filepath.Join(dirs[1], "lib/text-5")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[10] ^= 1
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	name2 := func(p string) string {
		if p == dirs[1] {
			return "changed"
		}
		return unitName(p)
	}
	opts.Processors = 2
	warm, st := writeImage(t, unitTree(t, dirs, name2), opts)
	if st.CacheHits != 4 || st.CacheMisses != 1 || st.CacheStored != 1 {
		t.Fatalf("one unit changed: %d hits, %d misses, %d stored; want 4, 1, 1", st.CacheHits, st.CacheMisses, st.CacheStored)
	}
	noCache := opts
	noCache.Cache = nil
	ref2, _ := writeImage(t, unitTree(t, dirs, name2), noCache)
	if sha(t, warm) != sha(t, ref2) || sha(t, ref2) == want {
		t.Fatal("one unit changed: the warm image differs from the one without a cache (or from nothing)")
	}
	checkUnsquashfs(t, warm, root)
}

// entries lists the entry files of a cache directory.
func entries(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "v1", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range m {
		if !strings.HasPrefix(filepath.Base(p), ".") {
			out = append(out, p)
		}
	}
	return out
}

// TestCacheDamagedEntries damages entries in three ways and checks that
// each is detected, not used, and rewritten.
func TestCacheDamagedEntries(t *testing.T) {
	_, dirs := unitSources(t, testBlock)
	dir := t.TempDir()
	opts := unitOpts
	opts.Cache = openCache(t, dir)
	var warnings []string
	opts.Warn = func(s string) { warnings = append(warnings, s) }
	first, _ := writeImage(t, unitTree(t, dirs, unitName), opts)
	want := sha(t, first)
	es := entries(t, dir)
	if len(es) != 5 {
		t.Fatalf("%d entries, want 5", len(es))
	}
	// A flipped byte in the middle, a truncated entry, and one unit's
	// entry in the place of another's.
	data, err := os.ReadFile(es[0])
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(es[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(es[1], 100); err != nil {
		t.Fatal(err)
	}
	other, err := os.ReadFile(es[3])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(es[2], other, 0o644); err != nil {
		t.Fatal(err)
	}
	warnings = nil
	img, st := writeImage(t, unitTree(t, dirs, unitName), opts)
	if sha(t, img) != want {
		t.Fatal("damaged entries: image differs")
	}
	if st.CacheDamaged != 3 || st.CacheHits != 2 || st.CacheMisses != 3 || st.CacheStored != 3 {
		t.Fatalf("damaged entries: %d damaged, %d hits, %d misses, %d stored; want 3, 2, 3, 3", st.CacheDamaged, st.CacheHits, st.CacheMisses, st.CacheStored)
	}
	if len(warnings) != 3 {
		t.Errorf("warnings %q, want one per damaged entry", warnings)
	}
	img, st = writeImage(t, unitTree(t, dirs, unitName), opts)
	if sha(t, img) != want || st.CacheHits != 5 || st.CacheDamaged != 0 {
		t.Fatalf("after the rewrite: %d hits, %d damaged; want 5, 0", st.CacheHits, st.CacheDamaged)
	}
}

// TestCacheConcurrentWriters runs builds sharing one cold cache at once.
func TestCacheConcurrentWriters(t *testing.T) {
	_, dirs := unitSources(t, testBlock)
	ref, _ := writeImage(t, unitTree(t, dirs, unitName), unitOpts)
	want := sha(t, ref)
	dir := t.TempDir()
	var wg sync.WaitGroup
	imgs := make([]string, 4)
	errs := make([]error, 4)
	for i := range imgs {
		imgs[i] = filepath.Join(t.TempDir(), "img")
		tree := unitTree(t, dirs, unitName)
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := unitOpts
			opts.Processors = 1 + i%2
			opts.Cache = openCache(t, dir)
			f, err := os.Create(imgs[i])
			if err != nil {
				errs[i] = err
				return
			}
			defer f.Close()
			_, errs[i] = squashfs.Write(context.Background(), f, tree, opts)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("build %d: %v", i, err)
		}
		if sha(t, imgs[i]) != want {
			t.Fatalf("build %d: image differs", i)
		}
	}
	all, err := filepath.Glob(filepath.Join(dir, "v1", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Errorf("cache holds %q, want 5 entries and no temporary files", all)
	}
	opts := unitOpts
	opts.Cache = openCache(t, dir)
	img, st := writeImage(t, unitTree(t, dirs, unitName), opts)
	if sha(t, img) != want || st.CacheHits != 5 {
		t.Fatalf("after concurrent writers: %d hits, want 5 (and the same image)", st.CacheHits)
	}
}

// roCache is a cache that refuses writes, as a read-only directory does.
type roCache struct{ squashfs.Cache }

func (roCache) Put(string) (squashfs.CacheWriter, error) { return nil, cache.ErrReadOnly }

// TestCacheReadOnly uses a cache that cannot be written: it is used, a
// miss is compressed, and one warning says nothing is stored.
func TestCacheReadOnly(t *testing.T) {
	_, dirs := unitSources(t, testBlock)
	dir := t.TempDir()
	opts := unitOpts
	opts.Cache = openCache(t, dir)
	ref, _ := writeImage(t, unitTree(t, dirs, unitName), opts)
	if err := os.Remove(entries(t, dir)[0]); err != nil {
		t.Fatal(err)
	}
	var warnings []string
	opts.Warn = func(s string) { warnings = append(warnings, s) }
	opts.Cache = roCache{openCache(t, dir)}
	img, st := writeImage(t, unitTree(t, dirs, unitName), opts)
	if sha(t, img) != sha(t, ref) || st.CacheHits != 4 || st.CacheMisses != 1 || st.CacheStored != 0 {
		t.Fatalf("read-only cache: %d hits, %d misses, %d stored; want 4, 1, 0 (and the same image)", st.CacheHits, st.CacheMisses, st.CacheStored)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "read-only") {
		t.Errorf("warnings %q, want one about the read-only cache", warnings)
	}
}

// TestUnitsWithoutCacheAgainstTools checks an image of units in every
// setting that changes their layout with unsquashfs.
func TestUnitsWithoutCacheAgainstTools(t *testing.T) {
	root, dirs := unitSources(t, testBlock)
	for _, o := range []squashfs.Options{
		{NoFragments: true},
		{NoDuplicates: true},
		{Compressor: squashfs.Compressor{Kind: "none"}},
	} {
		o.BlockSize, o.AllRoot = testBlock, true
		dir := t.TempDir()
		o.Cache = openCache(t, dir)
		cold, _ := writeImage(t, unitTree(t, dirs, unitName), o)
		warm, st := writeImage(t, unitTree(t, dirs, unitName), o)
		if !bytes.Equal([]byte(sha(t, cold)), []byte(sha(t, warm))) || st.CacheHits != 5 {
			t.Fatalf("%+v: warm image differs or %d hits", o, st.CacheHits)
		}
		checkUnsquashfs(t, warm, root)
	}
}
