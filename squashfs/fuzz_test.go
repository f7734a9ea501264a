package squashfs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/squashfs"
)

// fuzzTree turns bytes into a tree of in-memory files, directories and
// symlinks with sizes around the block size, names of varied lengths and
// duplicated contents.
func fuzzTree(data []byte) *squashfs.Tree {
	next := func() int {
		if len(data) == 0 {
			return 0
		}
		b := int(data[0])
		data = data[1:]
		return b
	}
	tree := squashfs.NewTree()
	tree.Root.Mtime = 7
	dirs := []*squashfs.Node{tree.Root}
	names := map[*squashfs.Node]map[string]bool{}
	for i := 0; len(data) > 0 && i < 400; i++ {
		parent := dirs[next()%len(dirs)]
		op := next()
		nameLen := 1 + next()%40
		if op%17 == 0 {
			nameLen = 255
		}
		name := strings.Repeat(string(rune('a'+next()%26)), nameLen)[:nameLen-1] + fmt.Sprint(i%10)
		if len(name) > 255 {
			name = name[:255]
		}
		n := &squashfs.Node{Name: name, Perm: uint16(0o400 | next()<<1&0o377), Mtime: int64(next() * 1000)}
		switch op % 4 {
		case 0:
			n.Type = squashfs.TypeDir
			n.Perm |= 0o700
			dirs = append(dirs, n)
		case 1:
			n.Type, n.Target = squashfs.TypeSymlink, strings.Repeat("t/", 1+next()%5)
			n.Perm = 0o777
		default:
			n.Type = squashfs.TypeFile
			size := []int{0, 1, testBlock - 1, testBlock, testBlock + 1, 2*testBlock + 3}[next()%6] + next()
			fill := byte(next())
			content := bytes.Repeat([]byte{fill}, size)
			for j := 0; j < size; j += 1 + next() {
				content[j] = byte(j ^ next())
			}
			n.Content, n.Size = content, int64(size)
		}
		if names[parent] == nil {
			names[parent] = map[string]bool{}
		}
		if !names[parent][name] { // a name taken drops the entry
			names[parent][name] = true
			parent.Add(n)
		}
	}
	return tree
}

// compareTree checks an extracted directory against the tree.
func compareTree(t *testing.T, n *squashfs.Node, dir string) {
	t.Helper()
	seen := map[string]bool{}
	for _, c := range n.Children {
		seen[c.Name] = true
		p := filepath.Join(dir, c.Name)
		st, err := os.Lstat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if c.Type != squashfs.TypeSymlink && uint16(st.Mode().Perm()) != c.Perm&0o777 {
			t.Errorf("%s: mode %v, want %o", p, st.Mode(), c.Perm)
		}
		if c.Type != squashfs.TypeDir && st.ModTime().Unix() != c.Mtime {
			t.Errorf("%s: mtime %d, want %d", p, st.ModTime().Unix(), c.Mtime)
		}
		switch c.Type {
		case squashfs.TypeDir:
			if !st.IsDir() {
				t.Fatalf("%s: not a directory", p)
			}
			compareTree(t, c, p)
		case squashfs.TypeSymlink:
			if got, _ := os.Readlink(p); got != c.Target {
				t.Errorf("%s: target %q, want %q", p, got, c.Target)
			}
		case squashfs.TypeFile:
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, c.Content) {
				t.Errorf("%s: content differs (%d bytes, want %d): %v", p, len(got), len(c.Content), err)
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !seen[e.Name()] {
			t.Errorf("%s: not in the tree", path.Join(dir, e.Name()))
		}
	}
}

func FuzzWrite(f *testing.F) {
	unsq := testutil.Tool(f, "unsquashfs", "squashfs-tools")
	f.Add([]byte{})
	f.Add([]byte("hello, squashfs"))
	f.Add(bytes.Repeat([]byte{2, 3, 5, 7, 11, 13, 17}, 40))
	f.Fuzz(func(t *testing.T, data []byte) {
		tree := fuzzTree(data)
		dir := t.TempDir()
		img := filepath.Join(dir, "img")
		w, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		_, err = squashfs.Write(context.Background(), w, tree, squashfs.Options{
			BlockSize: testBlock, Processors: 3, MkfsTime: time.Unix(1, 0), AllRoot: true,
			NoFragments: len(data) > 0 && data[0] == 0xff,
		})
		w.Close()
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "x")
		if b, err := exec.Command(unsq, "-no-progress", "-d", out, img).CombinedOutput(); err != nil {
			t.Fatalf("unsquashfs: %v\n%s", err, b)
		}
		compareTree(t, tree.Root, out)
	})
}

// FuzzParseCompressor: every spec either fails with ErrCompressor or
// parses to a compressor whose String parses back to the same value.
func FuzzParseCompressor(f *testing.F) {
	for _, s := range []string{"zstd", "zstd -Xcompression-level 19", "gzip -Xcompression-level 1", "xz -Xdict-size 100%",
		"xz -Xdict-size 1M", "xz -Xdict-size 512K", "none", "none -X", "lz4", "zstd -Xcompression-level", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		c, err := squashfs.ParseCompressor(spec)
		if err != nil {
			if !errors.Is(err, squashfs.ErrCompressor) {
				t.Fatalf("%q: error %v does not wrap ErrCompressor", spec, err)
			}
			return
		}
		back, err := squashfs.ParseCompressor(c.String())
		if err != nil || back != c {
			t.Fatalf("%q: parsed to %+v, whose String %q parses to %+v, %v", spec, c, c.String(), back, err)
		}
	})
}
