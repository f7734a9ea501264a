package initrd

import (
	"bytes"
	"io"
	"io/fs"
	"path"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
)

// fuzzEntries turns fuzz input into archive operations: each operation is
// a kind byte, a name length byte and the name, then a permission byte and
// a length byte with contents (files) or a target (links).
type fuzzOp struct {
	kind byte // 0 dir, 1 file, 2 symlink, 3 streamed file
	name string
	perm fs.FileMode
	data string
}

func decodeFuzzOps(b []byte) []fuzzOp {
	take := func(n int) []byte {
		n = min(n, len(b))
		out := b[:n]
		b = b[n:]
		return out
	}
	num := func() int {
		if len(b) == 0 {
			return 0
		}
		return int(take(1)[0])
	}
	var ops []fuzzOp
	for len(b) > 0 && len(ops) < 64 {
		op := fuzzOp{kind: byte(num() % 4)}
		op.name = string(take(num() % 32))
		op.perm = fs.FileMode(num()) | fs.FileMode(num()&0x0f)<<8
		op.perm = op.perm&fs.ModePerm | map[bool]fs.FileMode{true: fs.ModeSetuid}[op.perm&0x200 != 0]
		op.data = string(take(num()))
		ops = append(ops, op)
	}
	return ops
}

type fuzzWant struct {
	mode cpio.FileMode
	data string
	link string
}

func FuzzArchiveRoundTrip(f *testing.F) {
	f.Add([]byte("\x01\x04init\xed\x00\x05hello"), int64(1))
	f.Add([]byte("\x00\x03usr\xed\x01\x00\x01\x0busr/bin/foo\xa4\x01\x02hi\x02\x03bin\xff\x01\x07usr/bin"), int64(1700000000))
	f.Fuzz(func(t *testing.T, data []byte, mtime int64) {
		a, err := NewArchive(time.Unix(mtime, 0))
		if err != nil {
			return
		}
		want := map[string]fuzzWant{}
		implicit := map[string]bool{}
		for _, op := range decodeFuzzOps(data) {
			var err error
			var w fuzzWant
			switch op.kind {
			case 0:
				err = a.AddDir(op.name, op.perm)
				w.mode = cpio.TypeDir | unixMode(kindDir, op.perm)&^cpio.ModeType
			case 1:
				err = a.AddBytes(op.name, op.perm, []byte(op.data))
				w.mode, w.data = cpio.TypeReg|unixMode(kindFile, op.perm)&^cpio.ModeType, op.data
			case 2:
				err = a.AddSymlink(op.name, op.data)
				w.mode, w.link = cpio.TypeSymlink|0o777, op.data
			case 3:
				d := op.data
				err = a.AddFile(op.name, op.perm, int64(len(d)), func() (io.ReadCloser, error) {
					return io.NopCloser(bytes.NewReader([]byte(d))), nil
				})
				w.mode, w.data = cpio.TypeReg|unixMode(kindFile, op.perm)&^cpio.ModeType, op.data
			}
			if err != nil {
				continue
			}
			name, _ := CleanName(op.name)
			want[name] = w
			delete(implicit, name)
			for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
				if _, ok := want[dir]; !ok {
					want[dir] = fuzzWant{mode: cpio.TypeDir | 0o755}
					implicit[dir] = true
				}
			}
		}
		var buf bytes.Buffer
		n, err := a.WriteTo(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(buf.Len()) || n%4 != 0 {
			t.Fatalf("wrote %d bytes, reported %d", buf.Len(), n)
		}
		recs, end := readArchive(t, buf.Bytes())
		if end != buf.Len() {
			t.Fatalf("trailer ends at %d of %d", end, buf.Len())
		}
		if len(recs) != len(want) {
			t.Fatalf("%d records, want %d", len(recs), len(want))
		}
		prev := ""
		for i, r := range recs {
			h := r.hdr
			if i > 0 && h.Name <= prev {
				t.Fatalf("%q after %q: not sorted", h.Name, prev)
			}
			prev = h.Name
			w, ok := want[h.Name]
			if !ok {
				t.Fatalf("unexpected record %q", h.Name)
			}
			if h.Mode != w.mode || string(r.data) != w.data || h.Linkname != w.link {
				t.Errorf("%q: mode %o data %q link %q; want %o %q %q", h.Name, h.Mode, r.data, h.Linkname, w.mode, w.data, w.link)
			}
			if h.Inode != int64(i+1) || h.Uid != 0 || h.Guid != 0 || h.ModTime.Unix() != mtime {
				t.Errorf("%q: inode %d uid %d gid %d mtime %d", h.Name, h.Inode, h.Uid, h.Guid, h.ModTime.Unix())
			}
		}
		info, err := Identify(bytes.NewReader(buf.Bytes()), n)
		if err != nil || len(info.Segments) != 1 || info.Segments[0] != (Segment{0, n, FormatCPIO, false}) {
			t.Errorf("Identify: %v, %v", info, err)
		}
	})
}

// FuzzIdentify feeds arbitrary bytes to Identify: it must not panic or
// loop, and the segments it reports must lie in order inside the input.
func FuzzIdentify(f *testing.F) {
	f.Add([]byte("070701"))
	f.Add([]byte("\x28\xb5\x2f\xfd\x00\x00\x01\x00\x00"))
	f.Add([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00070701"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := Identify(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		var at int64
		for _, s := range info.Segments {
			if s.Offset < at || s.Size <= 0 || s.Offset+s.Size > int64(len(data)) {
				t.Fatalf("segment %+v out of place in %d bytes (after %d)", s, len(data), at)
			}
			at = s.Offset + s.Size
		}
	})
}

// FuzzWriterSegment appends an image after arbitrary bases and reads the
// segment back: the bases must be unchanged, the segment aligned and its
// archive must hold the image.
func FuzzWriterSegment(f *testing.F) {
	f.Add([]byte("abc"), []byte("hsqs"), uint8(1), "/nix-store.squashfs")
	f.Add([]byte{}, []byte{}, uint8(0), "a/b/c")
	f.Fuzz(func(t *testing.T, base, image []byte, nbases uint8, name string) {
		var buf seekBuffer
		w, err := NewWriter(&buf, Options{Name: name})
		if err != nil {
			return
		}
		var want []byte
		for i := 0; i < int(nbases%4); i++ {
			part := base[:len(base)*i/3]
			if _, err := w.AppendBase(bytes.NewReader(part)); err != nil {
				t.Fatal(err)
			}
			want = append(want, part...)
		}
		iw, err := w.CreateImage()
		if err != nil {
			t.Fatal(err)
		}
		// Write the image in two pieces, the second first.
		half := len(image) / 2
		if _, err := iw.Seek(int64(half), io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if _, err := iw.Write(image[half:]); err != nil {
			t.Fatal(err)
		}
		if _, err := iw.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if _, err := iw.Write(image[:half]); err != nil {
			t.Fatal(err)
		}
		res, err := w.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.b[:len(want)], want) {
			t.Fatal("bases changed")
		}
		if res.SegmentOffset%4 != 0 || res.SegmentOffset-int64(len(want)) > 3 || res.Size != int64(len(buf.b)) {
			t.Fatalf("segment at %d after %d bytes of bases, size %d of %d", res.SegmentOffset, len(want), res.Size, len(buf.b))
		}
		if name == "" {
			name = DefaultName
		}
		clean, _ := CleanName(name)
		checkSegment(t, buf.b[res.SegmentOffset:], clean, image)
	})
}
