package squashfs

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"

	kzstd "github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

func testBlocks(n int) map[string][]byte {
	rng := rand.New(rand.NewPCG(7, 8))
	random := make([]byte, n)
	text := make([]byte, n)
	for i := range random {
		random[i] = byte(rng.Uint32())
		text[i] = "the quick brown fox\n"[rng.IntN(20)]
	}
	return map[string][]byte{"random": random, "text": text, "zeros": make([]byte, n), "short": text[:n/3+1]}
}

// zstdWindow returns the window a zstd frame declares: its content size
// for a single-segment frame.
func zstdWindow(t *testing.T, frame []byte) uint64 {
	t.Helper()
	if binary.LittleEndian.Uint32(frame) != 0xFD2FB528 {
		t.Fatalf("not a zstd frame: % x", frame[:8])
	}
	fhd := frame[4]
	if fhd&0x20 == 0 { // no Single_Segment flag: a window descriptor follows
		wd := frame[5]
		base := uint64(1) << (10 + wd>>3)
		return base + base/8*uint64(wd&7)
	}
	// Single segment: the window is the frame content size.
	fcsLen := []int{1, 2, 4, 8}[fhd>>6]
	at := 5 + []int{0, 1, 2, 4}[fhd&3]
	b := make([]byte, 8)
	copy(b, frame[at:at+fcsLen])
	v := binary.LittleEndian.Uint64(b)
	if fcsLen == 2 {
		v += 256
	}
	return v
}

// TestZstdFrames checks what the kernel needs of each block: one frame
// with a window no larger than max(block size, 8 KiB), that decodes to
// the block.
func TestZstdFrames(t *testing.T) {
	dec, err := kzstd.NewReader(nil, kzstd.WithDecoderMaxWindow(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	for _, bs := range []int{4096, 8192, 128 << 10, 1 << 20} {
		levels := []int{1, 6, 15, 19, 22}
		if bs > 128<<10 {
			levels = []int{3, 19}
		}
		for _, level := range levels {
			enc, err := newZstdEncoder(level, bs)
			if err != nil {
				t.Fatal(err)
			}
			for name, b := range testBlocks(bs) {
				c, err := enc.compress(nil, b)
				if err != nil {
					t.Fatal(err)
				}
				if w := zstdWindow(t, c); w > uint64(max(bs, metaSize)) {
					t.Errorf("block %d level %d %s: window %d", bs, level, name, w)
				}
				got, err := dec.DecodeAll(c, nil)
				if err != nil || !bytes.Equal(got, b) {
					t.Errorf("block %d level %d %s: round trip: %v", bs, level, name, err)
				}
			}
		}
	}
}

func TestGzipXzRoundTrip(t *testing.T) {
	for _, bs := range []int{4096, 1 << 20} {
		for name, b := range testBlocks(bs) {
			g, _ := Compressor{Kind: "gzip"}.newEncoder(bs)
			c, err := g.compress(nil, b)
			if err != nil {
				t.Fatal(err)
			}
			r, err := zlib.NewReader(bytes.NewReader(c))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, b) {
				t.Errorf("gzip %d %s: %v", bs, name, err)
			}

			x, _ := Compressor{Kind: "xz"}.newEncoder(bs)
			c, err = x.compress(nil, b)
			if err != nil {
				t.Fatal(err)
			}
			// Stream flags: the check must be CRC32 (1) for the kernel.
			if c[7]&0x0f != 1 {
				t.Errorf("xz %d %s: check type %d", bs, name, c[7]&0x0f)
			}
			xr, err := xz.NewReader(bytes.NewReader(c))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := io.ReadAll(xr); err != nil || !bytes.Equal(got, b) {
				t.Errorf("xz %d %s: round trip: %v", bs, name, err)
			}
		}
	}
}

func TestCompressorOptionsBlock(t *testing.T) {
	for _, tc := range []struct {
		c    Compressor
		bs   int
		want []byte
	}{
		{Compressor{Kind: "zstd"}, 4096, nil},
		{Compressor{Kind: "zstd", Level: 15}, 4096, nil},
		{Compressor{Kind: "zstd", Level: 19}, 4096, []byte{19, 0, 0, 0}},
		{Compressor{Kind: "gzip"}, 4096, nil},
		{Compressor{Kind: "gzip", Level: 4}, 4096, []byte{4, 0, 0, 0, 15, 0, 0, 0}},
		{Compressor{Kind: "xz"}, 4096, nil},
		{Compressor{Kind: "xz", DictPercent: 100}, 1 << 20, nil},
		{Compressor{Kind: "none"}, 4096, nil},
	} {
		if got := tc.c.options(tc.bs); !bytes.Equal(got, tc.want) {
			t.Errorf("%v: options % x, want % x", tc.c, got, tc.want)
		}
	}
}
