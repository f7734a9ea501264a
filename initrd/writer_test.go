package initrd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/ulikunitz/xz"
)

// buildInitrd writes bases and image to a new file and returns its bytes
// and the result.
func buildInitrd(t testing.TB, opts Options, image []byte, bases ...[]byte) ([]byte, *Result) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "initrd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bases {
		if n, err := w.AppendBase(bytes.NewReader(b)); err != nil || n != int64(len(b)) {
			t.Fatalf("AppendBase: %d, %v", n, err)
		}
	}
	if image != nil {
		if err := w.AppendImage(bytes.NewReader(image)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return mustReadFile(t, f.Name()), res
}

// decompress undoes a segment's compression with the Go decoders.
func decompress(t testing.TB, c Compression, b []byte) []byte {
	t.Helper()
	var r io.Reader
	var err error
	switch c {
	case None:
		return b
	case Gzip:
		r, err = gzip.NewReader(bytes.NewReader(b))
	case Zstd:
		var d *zstd.Decoder
		d, err = zstd.NewReader(bytes.NewReader(b))
		if err == nil {
			defer d.Close()
		}
		r = d
	case XZ:
		r, err = xz.NewReader(bytes.NewReader(b))
	}
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decompressing %v: %v", c, err)
	}
	return out
}

// checkSegment reads the segment back and checks it holds the image under
// name and its parent directories.
func checkSegment(t testing.TB, seg []byte, name string, image []byte) {
	t.Helper()
	recs, end := readArchive(t, seg)
	if end != len(seg) {
		t.Errorf("segment is %d bytes, its archive %d", len(seg), end)
	}
	parts := strings.Split(name, "/")
	if len(recs) != len(parts) {
		t.Fatalf("segment has %d records, want %d", len(recs), len(parts))
	}
	for i := range parts {
		h := recs[i].hdr
		if want := strings.Join(parts[:i+1], "/"); h.Name != want {
			t.Errorf("record %d is %q, want %q", i, h.Name, want)
		}
		if h.Inode != int64(i+1) || h.ModTime.Unix() != DefaultMTime {
			t.Errorf("%s: inode %d mtime %d", h.Name, h.Inode, h.ModTime.Unix())
		}
	}
	last := recs[len(recs)-1]
	if last.hdr.Mode != 0o100444 || last.hdr.Size != int64(len(image)) || !bytes.Equal(last.data, image) {
		t.Errorf("image record: mode %o size %d, data equal %v", last.hdr.Mode, last.hdr.Size, bytes.Equal(last.data, image))
	}
}

func TestWriterAlignsAfterOddBases(t *testing.T) {
	image := []byte("hsqs and then some")
	for _, c := range []Compression{None, Zstd} {
		for _, sizes := range [][]int{{}, {1}, {2}, {3}, {4}, {5, 6}, {7, 1, 1}} {
			var bases [][]byte
			var total int
			for i, n := range sizes {
				bases = append(bases, bytes.Repeat([]byte{byte('A' + i)}, n))
				total += n
			}
			out, res := buildInitrd(t, Options{Compression: c}, image, bases...)
			if res.SegmentOffset%4 != 0 || res.SegmentOffset < int64(total) || res.SegmentOffset-int64(total) > 3 {
				t.Errorf("%v bases %v: segment at %d", c, sizes, res.SegmentOffset)
			}
			if !bytes.Equal(out[:total], bytes.Join(bases, nil)) {
				t.Errorf("%v bases %v: bases not copied unchanged", c, sizes)
			}
			if pad := out[total:res.SegmentOffset]; bytes.Count(pad, []byte{0}) != len(pad) {
				t.Errorf("padding is not NUL bytes: %q", pad)
			}
			if res.Size != int64(len(out)) || res.SegmentOffset+res.SegmentSize != res.Size {
				t.Errorf("result %+v for %d bytes", res, len(out))
			}
			checkSegment(t, decompress(t, c, out[res.SegmentOffset:]), "nix-store.squashfs", image)
		}
	}
}

func TestWriterCompressions(t *testing.T) {
	image := bytes.Repeat([]byte("squashfs block "), 10000)
	for _, c := range []Compression{None, Zstd, Gzip, XZ} {
		t.Run(c.String(), func(t *testing.T) {
			a, err := NewArchive(time.Time{})
			testutil.NoError(t, err)
			testutil.NoError(t, a.AddBytes("init", 0o755, []byte("#!/bin/sh\n")))
			base := mustArchive(t, a)
			out, res := buildInitrd(t, Options{Compression: c, Name: "/boot/store.img"}, image, base)
			seg := out[res.SegmentOffset:]
			if c != None && len(seg) >= len(image) {
				t.Errorf("%v segment is %d bytes for a %d-byte image", c, len(seg), len(image))
			}
			checkSegment(t, decompress(t, c, seg), "boot/store.img", image)
			info, err := Identify(bytes.NewReader(out), int64(len(out)))
			if err != nil {
				t.Fatal(err)
			}
			want := map[Compression]Format{None: FormatCPIO, Zstd: FormatZstd, Gzip: FormatGzip, XZ: FormatXZ}[c]
			if len(info.Segments) != 2 || info.Segments[0] != (Segment{0, int64(len(base)), FormatCPIO, false}) ||
				info.Segments[1].Format != want || info.Segments[1].Offset != res.SegmentOffset {
				t.Errorf("Identify: %v", info)
			}
			if s := info.Segments[1]; s.Offset+s.Size != int64(len(out)) || s.ToEnd != (c == XZ) {
				t.Errorf("Identify: last segment %+v, initrd %d bytes", s, len(out))
			}
		})
	}
}

// TestWriterStreaming writes the image through the view the way a squashfs
// writer does: a placeholder superblock, the body, then a seek back to
// patch the superblock.
func TestWriterStreaming(t *testing.T) {
	for _, c := range []Compression{None, Gzip} {
		f, err := os.Create(filepath.Join(t.TempDir(), "initrd"))
		if err != nil {
			t.Fatal(err)
		}
		w, err := NewWriter(f, Options{Compression: c, TempDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.AppendBase(strings.NewReader("odd")); err != nil {
			t.Fatal(err)
		}
		iw, err := w.CreateImage()
		if err != nil {
			t.Fatal(err)
		}
		write := func(s string) {
			t.Helper()
			if n, err := iw.Write([]byte(s)); err != nil || n != len(s) {
				t.Fatalf("Write(%q) = %d, %v", s, n, err)
			}
		}
		write("SUPERBLOCK")
		write(strings.Repeat("b", 4093))
		if _, err := iw.ReadFrom(strings.NewReader("tail")); err != nil {
			t.Fatal(err)
		}
		p, err := iw.Seek(0, io.SeekStart)
		testutil.NoError(t, err)
		if p != 0 {
			t.Fatal(p)
		}
		write("superblock")
		back := make([]byte, 10)
		if n, err := iw.ReadAt(back, 0); err != nil || string(back[:n]) != "superblock" {
			t.Errorf("ReadAt = %q, %v", back[:n], err)
		}
		p, err = iw.Seek(-4, io.SeekEnd)
		testutil.NoError(t, err)
		if p != 4103 {
			t.Errorf("SeekEnd: %d", p)
		}
		write("TAIL!") // grows the image by one byte
		if iw.Size() != 4108 {
			t.Errorf("Size() = %d", iw.Size())
		}
		res, err := w.Close()
		if err != nil {
			t.Fatal(err)
		}
		testutil.NoError(t, f.Close())
		if _, err := iw.Write([]byte("x")); !errors.Is(err, ErrState) {
			t.Errorf("write after Close: %v", err)
		}
		out := mustReadFile(t, f.Name())
		want := "superblock" + strings.Repeat("b", 4093) + "TAIL!"
		checkSegment(t, decompress(t, c, out[res.SegmentOffset:]), "nix-store.squashfs", []byte(want))
		if res.ImageSize != int64(len(want)) || res.Size != int64(len(out)) {
			t.Errorf("result %+v", res)
		}
		if entries, err := os.ReadDir(filepath.Dir(f.Name())); err != nil || len(entries) != 1 {
			t.Errorf("files left next to the output: %v (%v)", entries, err)
		}
	}
}

func TestWriterTooLarge(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "initrd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, Options{})
	testutil.NoError(t, err)
	iw, err := w.CreateImage()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iw.Seek(MaxFileSize-1, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := iw.Write([]byte("ab")); !errors.Is(err, ErrFileTooLarge) {
		t.Fatalf("write past 4 GiB: %v", err)
	}
	if _, err := w.Close(); !errors.Is(err, ErrFileTooLarge) {
		t.Errorf("Close after a failed image: %v", err)
	}
	st, err := f.Stat()
	testutil.NoError(t, err)
	if st.Size() > 1024 {
		t.Errorf("output grew to %d bytes", st.Size())
	}
}

// TestWriterWarnsPast2GiB writes a sparse image just over 2 GiB.
func TestWriterWarnsPast2GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a sparse 2 GiB file")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "initrd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, Options{})
	testutil.NoError(t, err)
	iw, err := w.CreateImage()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iw.Seek(WarnSize, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := iw.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	res, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "2 GiB") {
		t.Errorf("warnings %q", res.Warnings)
	}
	hdr := make([]byte, 110)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	if got := string(hdr[54:62]); got != "80000001" {
		t.Errorf("c_filesize = %s", got)
	}
}

func TestWriterOrder(t *testing.T) {
	var buf seekBuffer
	w, err := NewWriter(&buf, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.CreateImage(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.AppendBase(strings.NewReader("x")); !errors.Is(err, ErrState) {
		t.Errorf("base after image: %v", err)
	}
	if _, err := w.CreateImage(); !errors.Is(err, ErrState) {
		t.Errorf("second image: %v", err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); !errors.Is(err, ErrState) {
		t.Errorf("second Close: %v", err)
	}
	checkSegment(t, buf.b, "nix-store.squashfs", nil)
	if _, err := NewWriter(&buf, Options{Name: "/"}); !errors.Is(err, ErrBadName) {
		t.Errorf("name /: %v", err)
	}
	if _, err := NewWriter(&buf, Options{Compression: 9}); !errors.Is(err, ErrUnknownCompression) {
		t.Errorf("compression 9: %v", err)
	}
}

func TestWriterBasesOnly(t *testing.T) {
	out, res := buildInitrd(t, Options{}, nil, []byte("abc"), []byte("de"))
	if string(out) != "abcde" || res.SegmentOffset != -1 || len(res.Bases) != 2 {
		t.Errorf("%q %+v", out, res)
	}
}

func TestParseCompression(t *testing.T) {
	for _, c := range []Compression{None, Zstd, Gzip, XZ} {
		if got, err := ParseCompression(c.String()); err != nil || got != c {
			t.Errorf("ParseCompression(%q) = %v, %v", c, got, err)
		}
	}
	if _, err := ParseCompression("lz4"); !errors.Is(err, ErrUnknownCompression) || !strings.Contains(err.Error(), "zstd") {
		t.Errorf("lz4: %v", err)
	}
}

// TestWriterReproducible builds the same initrd twice and compares the
// digests, then changes one input at a time.
func TestWriterReproducible(t *testing.T) {
	image := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, 3000)
	base := []byte("base initrd bytes")
	for _, c := range []Compression{None, Zstd, Gzip, XZ} {
		sum := func(opts Options, image, base []byte) [32]byte {
			opts.Compression = c
			out, _ := buildInitrd(t, opts, image, base)
			return sha256.Sum256(out)
		}
		ref := sum(Options{}, image, base)
		if sum(Options{}, image, base) != ref {
			t.Errorf("%v: same input, different bytes", c)
		}
		if sum(Options{MTime: time.Unix(DefaultMTime, 0)}, image, base) != ref {
			t.Errorf("%v: the default mtime is not %d", c, DefaultMTime)
		}
		changed := bytes.Clone(image)
		changed[len(changed)/2] ^= 0xff
		for what, got := range map[string][32]byte{
			"mtime": sum(Options{MTime: time.Unix(1700000000, 0)}, image, base),
			"name":  sum(Options{Name: "/nix-store.img"}, image, base),
			"image": sum(Options{}, changed, base),
			"base":  sum(Options{}, image, []byte("base initrd bytez")),
		} {
			if got == ref {
				t.Errorf("%v: changing the %s did not change the bytes", c, what)
			}
		}
	}
}

// seekBuffer is an in-memory io.WriteSeeker.
type seekBuffer struct {
	b   []byte
	pos int
}

func (s *seekBuffer) Write(p []byte) (int, error) {
	if need := s.pos + len(p); need > len(s.b) {
		s.b = append(s.b, make([]byte, need-len(s.b))...)
	}
	copy(s.b[s.pos:], p)
	s.pos += len(p)
	return len(p), nil
}

func (s *seekBuffer) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += int64(s.pos)
	case io.SeekEnd:
		off += int64(len(s.b))
	}
	s.pos = int(off)
	return off, nil
}

func TestWriterCloseContext(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "initrd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, Options{Compression: XZ, TempDir: t.TempDir()})
	testutil.NoError(t, err)
	if err := w.AppendImage(bytes.NewReader(make([]byte, 1<<16))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.CloseContext(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("CloseContext with a cancelled context: %v", err)
	}
}
