package initrd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
)

// Format names the encoding of one initrd segment.
type Format string

// Formats [Identify] recognises, by the magic bytes the kernel's
// decompress_method checks.
const (
	FormatCPIO     Format = "cpio"      // uncompressed newc (070701) or newc with checksums (070702)
	FormatOldCPIO  Format = "odc cpio"  // 070707: the kernel refuses it
	FormatGzip     Format = "gzip"      //
	FormatZstd     Format = "zstd"      //
	FormatXZ       Format = "xz"        //
	FormatLZMA     Format = "lzma"      //
	FormatBzip2    Format = "bzip2"     //
	FormatLZ4      Format = "lz4"       // legacy frames, what the kernel reads
	FormatLZ4Frame Format = "lz4 frame" // the kernel reads only legacy lz4 (lz4 -l)
	FormatLZO      Format = "lzo"       //
	FormatUnknown  Format = "unknown"   //
)

// Segment is one part of an initrd.
type Segment struct {
	Offset int64
	Size   int64 // to the end of the segment's data; NUL padding is not counted
	Format Format
	// ToEnd is set when the end of the segment was not searched for (xz,
	// lzma, bzip2, lz4, lzo, unknown data): it is assumed to run to the end
	// of the file.
	ToEnd bool
}

// Info describes an initrd.
type Info struct {
	Size     int64
	Segments []Segment
}

// Compression summarises the formats: the single format's name, a
// concatenation such as "cpio + zstd", or "empty".
func (i Info) Compression() string {
	if len(i.Segments) == 0 {
		return "empty"
	}
	parts := make([]string, len(i.Segments))
	for k, s := range i.Segments {
		parts[k] = string(s.Format)
	}
	return strings.Join(parts, " + ")
}

// String describes each segment with its offset and size.
func (i Info) String() string {
	if len(i.Segments) <= 1 {
		return i.Compression()
	}
	parts := make([]string, len(i.Segments))
	for k, s := range i.Segments {
		parts[k] = fmt.Sprintf("%s at %d (%d bytes)", s.Format, s.Offset, s.Size)
	}
	return "concatenation: " + strings.Join(parts, ", ")
}

var (
	magicGzip     = []byte{0x1f, 0x8b}
	magicGzipOld  = []byte{0x1f, 0x9e}
	magicZstd     = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicXZ       = []byte{0xfd, '7', 'z', 'X', 'Z', 0}
	magicLZMA     = []byte{0x5d, 0, 0}
	magicBzip2    = []byte("BZh")
	magicLZ4      = []byte{0x02, 0x21, 0x4c, 0x18}
	magicLZ4Frame = []byte{0x04, 0x22, 0x4d, 0x18}
	magicLZO      = []byte{0x89, 'L', 'Z', 'O', 0}
)

// Identify walks an initrd of the given size as the kernel's unpacker does:
// NUL bytes between segments are skipped; uncompressed cpio archives are
// followed to their trailer, zstd frames by their block headers, gzip
// members by decompressing them; any other compressed segment is taken to
// run to the end of the file.
func Identify(r io.ReaderAt, size int64) (Info, error) {
	info := Info{Size: size}
	var magic [6]byte
	for off := int64(0); off < size; {
		next, err := skipNULs(r, off, size)
		if err != nil {
			return info, err
		}
		if next >= size {
			break
		}
		off = next
		n, _ := r.ReadAt(magic[:], off)
		m := magic[:n]
		seg := Segment{Offset: off, Format: FormatUnknown, ToEnd: true}
		var end int64 = -1
		switch {
		case bytes.HasPrefix(m, []byte("070701")) || bytes.HasPrefix(m, []byte("070702")):
			seg.Format = FormatCPIO
			end, err = cpioEnd(r, off, size)
		case bytes.HasPrefix(m, []byte("070707")):
			seg.Format = FormatOldCPIO
		case bytes.HasPrefix(m, magicGzip) || bytes.HasPrefix(m, magicGzipOld):
			seg.Format = FormatGzip
			if m[1] == magicGzip[1] {
				end, err = gzipEnd(r, off, size)
			}
		case bytes.HasPrefix(m, magicZstd):
			seg.Format = FormatZstd
			end, err = zstdEnd(r, off, size)
		case bytes.HasPrefix(m, magicXZ):
			seg.Format = FormatXZ
		case bytes.HasPrefix(m, magicLZMA):
			seg.Format = FormatLZMA
		case bytes.HasPrefix(m, magicBzip2):
			seg.Format = FormatBzip2
		case bytes.HasPrefix(m, magicLZ4):
			seg.Format = FormatLZ4
		case bytes.HasPrefix(m, magicLZ4Frame):
			seg.Format = FormatLZ4Frame
		case bytes.HasPrefix(m, magicLZO):
			seg.Format = FormatLZO
		}
		if err != nil {
			return info, fmt.Errorf("initrd: %s segment at offset %d: %w", seg.Format, off, err)
		}
		if end < 0 {
			end = size
		} else {
			seg.ToEnd = false
		}
		seg.Size = end - off
		info.Segments = append(info.Segments, seg)
		off = end
	}
	return info, nil
}

func skipNULs(r io.ReaderAt, off, size int64) (int64, error) {
	buf := make([]byte, 4096)
	for off < size {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		for i := 0; i < n; i++ {
			if buf[i] != 0 {
				return off + int64(i), nil
			}
		}
		off += int64(n)
		if err != nil && err != io.EOF {
			return off, err
		}
		if n == 0 {
			break
		}
	}
	return size, nil
}

// errTruncated reports a segment that ends before its own structure does.
var errTruncated = errors.New("truncated")

// cpioEnd follows newc headers from off to the end of the trailer record.
func cpioEnd(r io.ReaderAt, off, size int64) (int64, error) {
	var hdr [110]byte
	for {
		if off+110 > size {
			return 0, errTruncated
		}
		if _, err := r.ReadAt(hdr[:], off); err != nil {
			return 0, err
		}
		if !bytes.HasPrefix(hdr[:], []byte("07070")) {
			return 0, fmt.Errorf("no newc header at offset %d", off)
		}
		field := func(i int) (int64, error) {
			v, err := strconv.ParseUint(string(hdr[6+8*i:6+8*i+8]), 16, 32)
			return int64(v), err
		}
		fsize, err1 := field(6)
		nsize, err2 := field(11)
		if err := errors.Join(err1, err2); err != nil || nsize < 1 || nsize > MaxNameLen+1 {
			return 0, fmt.Errorf("bad newc header at offset %d", off)
		}
		name := make([]byte, nsize)
		if _, err := r.ReadAt(name, off+110); err != nil {
			return 0, errTruncated
		}
		next := align4(align4(off+110+nsize) + fsize)
		if string(name) == "TRAILER!!!\x00" {
			if next > size {
				next = size
			}
			return next, nil
		}
		off = next
	}
}

func align4(n int64) int64 { return (n + 3) &^ 3 }

// zstdEnd walks zstd frames (and skippable frames) from off without
// decompressing them and returns the end of the last consecutive one.
func zstdEnd(r io.ReaderAt, off, size int64) (int64, error) {
	var b [18]byte
	for off+4 <= size {
		if _, err := r.ReadAt(b[:4], off); err != nil {
			return 0, err
		}
		magic := binary.LittleEndian.Uint32(b[:4])
		switch {
		case magic&0xfffffff0 == 0x184d2a50: // skippable frame
			if _, err := r.ReadAt(b[:8], off); err != nil {
				return 0, errTruncated
			}
			off += 8 + int64(binary.LittleEndian.Uint32(b[4:8]))
			continue
		case magic != 0xfd2fb528:
			return off, nil
		}
		if _, err := r.ReadAt(b[:5], off); err != nil {
			return 0, errTruncated
		}
		fhd := b[4]
		hdr := int64(1)
		if fhd&0x20 == 0 { // no single-segment flag: a window descriptor
			hdr++
		}
		hdr += []int64{0, 1, 2, 4}[fhd&3] // dictionary ID
		fcs := []int64{0, 2, 4, 8}[fhd>>6]
		if fcs == 0 && fhd&0x20 != 0 {
			fcs = 1
		}
		hdr += fcs
		checksum := fhd&0x04 != 0
		off += 4 + hdr
		for {
			if off+3 > size {
				return 0, errTruncated
			}
			if _, err := r.ReadAt(b[:3], off); err != nil {
				return 0, errTruncated
			}
			bh := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
			last, typ, bsize := bh&1 != 0, (bh>>1)&3, int64(bh>>3)
			switch typ {
			case 1: // RLE: one byte
				bsize = 1
			case 3:
				return 0, fmt.Errorf("reserved zstd block type at offset %d", off)
			}
			off += 3 + bsize
			if last {
				break
			}
		}
		if checksum {
			off += 4
		}
		if off > size {
			return 0, errTruncated
		}
	}
	return off, nil
}

// byteCounter is a flate.Reader (it has ReadByte), so the gzip reader reads
// exactly the member and no further.
type byteCounter struct {
	r   *io.SectionReader
	buf [1]byte
}

func (c *byteCounter) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *byteCounter) ReadByte() (byte, error) {
	_, err := io.ReadFull(c.r, c.buf[:])
	return c.buf[0], err
}

// gzipEnd decompresses one gzip member (discarding the output) to find
// where it ends.
func gzipEnd(r io.ReaderAt, off, size int64) (int64, error) {
	sr := io.NewSectionReader(r, off, size-off)
	bc := &byteCounter{r: sr}
	zr, err := gzip.NewReader(bc)
	if err != nil {
		return 0, err
	}
	zr.Multistream(false)
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return 0, err
	}
	pos, _ := sr.Seek(0, io.SeekCurrent)
	return off + pos, nil
}
