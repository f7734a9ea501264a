package squashfs

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
)

func memTree(paths ...string) *Tree {
	t := NewTree()
	for _, p := range paths {
		dir := t.Root
		parts := strings.Split(p, "/")
		for i, name := range parts {
			var next *Node
			for _, c := range dir.Children {
				if c.Name == name {
					next = c
				}
			}
			if next == nil {
				next = &Node{Name: name, Type: TypeDir, Perm: 0o755}
				if i == len(parts)-1 && !strings.HasSuffix(name, "dir") {
					next = &Node{Name: name, Type: TypeFile, Perm: 0o644, Size: 1, Content: []byte{'x'}}
				}
				dir.Add(next)
			}
			dir = next
		}
	}
	return t
}

// TestNumbering checks mksquashfs's order, seen on a real image: entries
// sorted bytewise, a directory numbered before its entries, the root last.
func TestNumbering(t *testing.T) {
	tree := memTree("top", "a/z", "a/bdir/1", "a/0", "a/bdir/ddir/2", "a/cdir/3", "B")
	p, err := NewPlan(context.Background(), tree, Options{BlockSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ino := range p.inodes {
		got = append(got, fmt.Sprintf("%d:%s", ino.num, ino.path))
	}
	want := "1:/B 2:/a 3:/a/0 4:/a/bdir 5:/a/bdir/1 6:/a/bdir/ddir 7:/a/bdir/ddir/2 8:/a/cdir 9:/a/cdir/3 10:/a/z 11:/top 12:/"
	if strings.Join(got, " ") != want {
		t.Fatalf("numbering\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

// TestDirListing checks the header rules: at most 256 entries a header,
// a new header when the inode block changes or the number is out of
// range, and an index entry when a metadata block's worth has passed.
func TestDirListing(t *testing.T) {
	var entries []entry
	refs := make([]uint64, 100000)
	for i := range 1000 {
		blk := uint64(i / 300 * 8000) // inode block changes every 300 entries
		num := uint32(10 + i)
		if i == 700 {
			num = 100000 // too far from the header's number
		}
		entries = append(entries, entry{name: fmt.Sprintf("entry-%04d-%s", i, strings.Repeat("x", 10)),
			ino: &inode{typ: TypeFile, num: num}})
		refs[num-1] = blk<<16 | uint64(i%300*30)
	}
	b, index := dirListing(entries, refs)
	type hdr struct{ count, start, num int }
	var hdrs []hdr
	at := 0
	offsets := map[int]bool{}
	for at < len(b) {
		offsets[at] = true
		h := hdr{int(binary.LittleEndian.Uint32(b[at:])) + 1, int(binary.LittleEndian.Uint32(b[at+4:])), int(binary.LittleEndian.Uint32(b[at+8:]))}
		hdrs = append(hdrs, h)
		at += 12
		for range h.count {
			nameLen := int(binary.LittleEndian.Uint16(b[at+6:])) + 1
			at += 8 + nameLen
		}
	}
	total := 0
	for _, h := range hdrs {
		if h.count > 256 {
			t.Errorf("header with %d entries", h.count)
		}
		total += h.count
	}
	if total != 1000 {
		t.Fatalf("%d entries in the headers", total)
	}
	// 0-255, 256-299 | 300-555, 556-599 | 600-699 | 700 | 701-855, 856-899 | 900-999
	// plus splits for the index.
	if len(hdrs) < 9 {
		t.Errorf("%d headers, want at least 9", len(hdrs))
	}
	if len(index) != len(b)/metaSize && len(index) != len(b)/metaSize+1 && len(index) == 0 {
		t.Errorf("%d index entries for a %d-byte listing", len(index), len(b))
	}
	for _, ix := range index {
		if !offsets[ix.offset] {
			t.Errorf("index entry at %d is not a header", ix.offset)
		}
	}
}
