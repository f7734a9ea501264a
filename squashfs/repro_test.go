package squashfs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/testutil"

	"github.com/nbimg/nbimg/squashfs"
)

func TestReproducible(t *testing.T) {
	src := t.TempDir()
	edgeTree(t, src, testBlock, 400)
	opts := squashfs.Options{BlockSize: testBlock, MkfsTime: time.Unix(5, 0)}
	var first string
	for _, procs := range []int{1, 2, 8, 2} {
		opts.Processors = procs
		img, _ := dirImage(t, src, opts)
		sum := sha(t, img)
		if first == "" {
			first = sum
		} else if sum != first {
			t.Fatalf("processors %d: sha256 %s, want %s", procs, sum, first)
		}
	}
	// One byte changed in one file changes the image; touching nothing
	// else does not.
	p := filepath.Join(src, "edges/text-4097")
	data := testutil.ReadFile(t, p)
	st, err := os.Stat(p)
	testutil.NoError(t, err)
	data[100] ^= 1
	testutil.NoError(t, os.WriteFile(p, data, 0o644))
	testutil.NoError(t, os.Chtimes(p, st.ModTime(), st.ModTime()))
	img, _ := dirImage(t, src, opts)
	if sha(t, img) == first {
		t.Fatal("changing a byte of a file did not change the image")
	}
	data[100] ^= 1
	testutil.NoError(t, os.WriteFile(p, data, 0o644))
	testutil.NoError(t, os.Chtimes(p, st.ModTime(), st.ModTime()))
	img, _ = dirImage(t, src, opts)
	if sha(t, img) != first {
		t.Fatal("restoring the byte did not restore the image")
	}
	// The superblock time is an input.
	opts.MkfsTime = time.Unix(6, 0)
	img, _ = dirImage(t, src, opts)
	if sha(t, img) == first {
		t.Fatal("mkfs time does not change the image")
	}
}

func TestDefaultMkfsTimeIsNewestMtime(t *testing.T) {
	tree := squashfs.NewTree()
	tree.Root.Mtime = 10
	tree.Root.Add(&squashfs.Node{Name: "a", Type: squashfs.TypeFile, Perm: 0o644, Mtime: 1234, Size: 1, Content: []byte("a")})
	tree.Root.Add(&squashfs.Node{Name: "b", Type: squashfs.TypeSymlink, Perm: 0o777, Mtime: 77, Target: "a"})
	img, _ := writeImage(t, tree, squashfs.Options{BlockSize: testBlock})
	if got := readSuper(t, img).MkfsTime; got != 1234 {
		t.Fatalf("mkfs time %d, want 1234", got)
	}
}

func TestErrorsNameThePath(t *testing.T) {
	ctx := context.Background()
	write := func(tree *squashfs.Tree) error {
		f, err := os.Create(filepath.Join(t.TempDir(), "img"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		_, err = squashfs.Write(ctx, f, tree, squashfs.Options{BlockSize: testBlock, Processors: 2})
		return err
	}
	t.Run("long name", func(t *testing.T) {
		tree := squashfs.NewTree()
		d := &squashfs.Node{Name: "d", Type: squashfs.TypeDir, Perm: 0o755}
		d.Children = append(d.Children, &squashfs.Node{Name: strings.Repeat("x", 256), Type: squashfs.TypeFifo})
		tree.Root.Add(d)
		err := write(tree)
		if !errors.Is(err, squashfs.ErrName) || !strings.Contains(err.Error(), "d/xxx") {
			t.Fatalf("got %v", err)
		}
		if err := tree.Root.Add(&squashfs.Node{Name: "a/b"}); !errors.Is(err, squashfs.ErrName) {
			t.Fatalf("Add a/b: %v", err)
		}
	})
	mk := func(t *testing.T, size int) (*squashfs.Tree, string) {
		dir := t.TempDir()
		p := filepath.Join(dir, "sub", "file")
		testutil.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		testutil.NoError(t, os.WriteFile(p, make([]byte, size), 0o644))
		tree, err := squashfs.DirTree(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		return tree, p
	}
	for _, size := range []int{100, 3*testBlock + 5} {
		t.Run("vanished", func(t *testing.T) {
			tree, p := mk(t, size)
			testutil.NoError(t, os.Remove(p))
			if err := write(tree); err == nil || !strings.Contains(err.Error(), "sub/file") {
				t.Fatalf("got %v", err)
			}
		})
		t.Run("grew", func(t *testing.T) {
			tree, p := mk(t, size)
			testutil.NoError(t, os.WriteFile(p, make([]byte, size+1), 0o644))
			if err := write(tree); !errors.Is(err, squashfs.ErrChanged) || !strings.Contains(err.Error(), "sub/file") {
				t.Fatalf("got %v", err)
			}
		})
		t.Run("shrank", func(t *testing.T) {
			tree, p := mk(t, size)
			testutil.NoError(t, os.WriteFile(p, make([]byte, size-1), 0o644))
			if err := write(tree); !errors.Is(err, squashfs.ErrChanged) || !strings.Contains(err.Error(), "sub/file") {
				t.Fatalf("got %v", err)
			}
		})
	}
	t.Run("unreadable source", func(t *testing.T) {
		_, err := squashfs.DirTree(ctx, filepath.Join(t.TempDir(), "missing"))
		if err == nil || !strings.Contains(err.Error(), "missing") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("same base name", func(t *testing.T) {
		a, b := filepath.Join(t.TempDir(), "x"), filepath.Join(t.TempDir(), "x")
		os.Mkdir(a, 0o755)
		os.Mkdir(b, 0o755)
		if _, err := squashfs.DirTree(ctx, a, b); err == nil || !strings.Contains(err.Error(), b) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("cycle", func(t *testing.T) {
		tree := squashfs.NewTree()
		d := &squashfs.Node{Name: "d", Type: squashfs.TypeDir, Perm: 0o755}
		d.Children = append(d.Children, &squashfs.Node{Name: "loop", Type: squashfs.TypeDir, Perm: 0o755, Children: []*squashfs.Node{d}})
		tree.Root.Add(d)
		if err := write(tree); err == nil || !strings.Contains(err.Error(), "/d/loop/d") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("block size", func(t *testing.T) {
		_, err := squashfs.NewPlan(ctx, squashfs.NewTree(), squashfs.Options{BlockSize: 5000})
		if err == nil {
			t.Fatal("block size 5000 accepted")
		}
	})
}

func TestParseCompressor(t *testing.T) {
	for spec, want := range map[string]string{
		"zstd":                        "zstd",
		"zstd -Xcompression-level 19": "zstd -Xcompression-level 19",
		"  gzip   ":                   "gzip",
		"gzip -Xcompression-level 1":  "gzip -Xcompression-level 1",
		"xz":                          "xz",
		"xz -Xdict-size 100%":         "xz -Xdict-size 100%",
		"xz -Xdict-size 1M":           "xz -Xdict-size 1048576",
		"xz -Xdict-size 512K":         "xz -Xdict-size 524288",
		"none":                        "none",
	} {
		c, err := squashfs.ParseCompressor(spec)
		if err != nil {
			t.Errorf("%q: %v", spec, err)
			continue
		}
		if c.String() != want {
			t.Errorf("%q: String() = %q, want %q", spec, c.String(), want)
		}
	}
	for _, spec := range []string{"", "lz4", "zstd -Xcompression-level 23", "zstd -Xcompression-level", "gzip -Xcompression-level 0",
		"xz -Xdict-size 2M", "xz -Xdict-size 0%", "zstd -Xdict-size 1M", "none -Xcompression-level 1", "gzip -Xwindow-size 9"} {
		_, err := squashfs.ParseCompressor(spec)
		if !errors.Is(err, squashfs.ErrCompressor) {
			t.Errorf("%q: got %v, want ErrCompressor", spec, err)
			continue
		}
		if !strings.Contains(err.Error(), `"zstd [-Xcompression-level 1..22]"`) {
			t.Errorf("%q: error does not list the accepted forms: %v", spec, err)
		}
	}
}

// TestLargeFile stores a sparse file over 4 GiB: an extended inode with
// 64-bit size, and all-zero blocks stored as holes. unsquashfs reads it
// back (only its non-zero bytes are compared, to keep the test quick).
func TestLargeFile(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 4 GiB")
	}
	rd := testutil.Tool(t, "rdsquashfs", "squashfs-tools-ng")
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "big"))
	if err != nil {
		t.Fatal(err)
	}
	const endAt = 4<<30 + 12345
	f.WriteAt([]byte("start"), 0)
	f.WriteAt([]byte("the end"), endAt)
	f.Close()
	img, st := dirImage(t, src, squashfs.Options{BlockSize: 1 << 20, MkfsTime: time.Unix(1, 0)})
	if st.SparseBlocks < 4000 {
		t.Errorf("%d sparse blocks", st.SparseBlocks)
	}
	if fi, err := os.Stat(img); err != nil || fi.Size() > 1<<20 {
		t.Errorf("image of a sparse file is %d bytes", fi.Size())
	}
	out, err := exec.Command(rd, "-s", "/big", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Inode type: extended file") || !strings.Contains(string(out), fmt.Sprint("File size: ", endAt+7)) {
		t.Errorf("rdsquashfs -s: %v\n%s", err, out)
	}
	cmd := exec.Command(testutil.Tool(t, "unsquashfs", "squashfs-tools"), "-cat", img, "big")
	nz := &nonZero{}
	cmd.Stdout = nz
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	want := map[int64]byte{0: 's', 1: 't', 2: 'a', 3: 'r', 4: 't'}
	for i, c := range []byte("the end") {
		want[endAt+int64(i)] = c
	}
	if nz.n != endAt+7 || fmt.Sprint(nz.bytes) != fmt.Sprint(want) {
		t.Errorf("unsquashfs -cat: %d bytes, non-zero %v", nz.n, nz.bytes)
	}
}

// nonZero records the non-zero bytes written to it and their offsets.
type nonZero struct {
	n     int64
	bytes map[int64]byte
}

func (w *nonZero) Write(b []byte) (int, error) {
	var zero [4096]byte
	for i := 0; i < len(b); i += len(zero) {
		chunk := b[i:min(i+len(zero), len(b))]
		if bytes.Equal(chunk, zero[:len(chunk)]) {
			continue
		}
		for j, c := range chunk {
			if c != 0 {
				if w.bytes == nil {
					w.bytes = map[int64]byte{}
				}
				w.bytes[w.n+int64(i+j)] = c
			}
		}
	}
	w.n += int64(len(b))
	return len(b), nil
}

// TestPlanWrittenTwice checks that writing does not change the plan.
func TestPlanWrittenTwice(t *testing.T) {
	src := t.TempDir()
	edgeTree(t, src, testBlock, 300)
	tree, err := squashfs.DirTree(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	p, err := squashfs.NewPlan(context.Background(), tree, squashfs.Options{BlockSize: testBlock, MkfsTime: time.Unix(3, 0)})
	if err != nil {
		t.Fatal(err)
	}
	var sums []string
	var stats []squashfs.Stats
	for range 2 {
		img := filepath.Join(t.TempDir(), "img")
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		// Start at an offset: the image is relative to where it begins.
		f.Write([]byte("prefix"))
		st, err := p.Write(context.Background(), f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		data := testutil.ReadFile(t, img)
		if string(data[:6]) != "prefix" || int64(len(data)) != 6+st.OutputBytes {
			t.Fatalf("image of %d bytes after the prefix, stats say %d", len(data)-6, st.OutputBytes)
		}
		testutil.NoError(t, os.WriteFile(img, data[6:], 0o644))
		sums = append(sums, sha(t, img))
		stats = append(stats, st)
		checkUnsquashfs(t, img, src)
	}
	if sums[0] != sums[1] || stats[0] != stats[1] {
		t.Fatalf("the same plan written twice differs: %v %v", stats[0], stats[1])
	}
}

// TestDuplicates checks whole-file duplicate detection on files longer
// than the prefix compared first.
func TestDuplicates(t *testing.T) {
	src := t.TempDir()
	a := make([]byte, 300<<10)
	for i := range a {
		a[i] = byte(i * 7 / 13)
	}
	b := append([]byte(nil), a...)
	b[len(b)-1]++ // same size and prefix as a, different end
	c := append([]byte(nil), a...)
	c[0]++ // same size, different start
	for name, data := range map[string][]byte{"a1": a, "a2": a, "b": b, "c": c, "sub/a3": a, "small1": a[:100], "small2": a[:100]} {
		testutil.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(src, name)), 0o755))
		testutil.NoError(t, os.WriteFile(filepath.Join(src, name), data, 0o644))
	}
	img, st := dirImage(t, src, squashfs.Options{BlockSize: testBlock, MkfsTime: time.Unix(1, 0)})
	if st.Duplicates != 3 || st.DuplicateBytes != 2*int64(len(a))+100 {
		t.Errorf("%d duplicates of %d bytes, want 3 of %d", st.Duplicates, st.DuplicateBytes, 2*len(a)+100)
	}
	checkUnsquashfs(t, img, src)
	_, st = dirImage(t, src, squashfs.Options{BlockSize: testBlock, MkfsTime: time.Unix(1, 0), NoDuplicates: true})
	if st.Duplicates != 0 {
		t.Errorf("NoDuplicates: %d duplicates", st.Duplicates)
	}
}

func TestProgress(t *testing.T) {
	src := t.TempDir()
	edgeTree(t, src, testBlock, 200)
	var calls []squashfs.Progress
	_, st := dirImage(t, src, squashfs.Options{BlockSize: testBlock, MkfsTime: time.Unix(1, 0), Processors: 3,
		Progress: func(p squashfs.Progress) { calls = append(calls, p) }})
	if len(calls) < 10 {
		t.Fatalf("%d progress calls", len(calls))
	}
	for i := 1; i < len(calls); i++ {
		if calls[i].Bytes < calls[i-1].Bytes || calls[i].Files < calls[i-1].Files {
			t.Fatalf("progress goes back: %+v after %+v", calls[i], calls[i-1])
		}
	}
	last := calls[len(calls)-1]
	if last.Bytes != last.TotalBytes || last.Files != last.TotalFiles || last.TotalBytes != st.InputBytes-st.DuplicateBytes {
		t.Errorf("last progress %+v, stats %+v", last, st)
	}
	if prev := calls[len(calls)-2]; prev.Bytes != last.TotalBytes || prev.Files != last.TotalFiles {
		t.Errorf("progress before the final report was %+v, want the totals %+v", prev, last)
	}
}
