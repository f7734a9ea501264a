package binarycache

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Both ways through oneShotWriter (one call, stream) give data that
// independent decoders read back, and the same input gives the same bytes.
func TestCompressorsBothWays(t *testing.T) {
	defer func(l, d int) { oneShotLimit, xzMaxDict = l, d }(oneShotLimit, xzMaxDict)
	oneShotLimit = 16 << 10
	xzMaxDict = 64 << 10 // an 8 MiB dictionary takes seconds to set up under -race
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 40<<10)
	for i := range data {
		data[i] = byte(r.IntN(16)) // compressible, not trivially
	}
	for _, c := range []Compression{XZ, Zstd, None} {
		for _, n := range []int{0, 1000, 16 << 10, 16<<10 + 1, len(data)} {
			compress := func() []byte {
				var b bytes.Buffer
				w, err := c.compressor(&b, level(c))
				if err != nil {
					t.Fatal(err)
				}
				// Odd write sizes, as a NAR writer's buffer flushes.
				for off := 0; off < n; off += 3333 {
					if _, err := w.Write(data[off:min(off+3333, n)]); err != nil {
						t.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				return b.Bytes()
			}
			out := compress()
			if !bytes.Equal(out, compress()) {
				t.Fatalf("%s %d bytes: two runs differ", c, n)
			}
			var rd io.Reader
			var err error
			switch c {
			case XZ:
				rd, err = xz.NewReader(bytes.NewReader(out))
			case Zstd:
				var d *zstd.Decoder
				d, err = zstd.NewReader(bytes.NewReader(out))
				if err == nil {
					defer d.Close()
				}
				rd = d
			default:
				rd = bytes.NewReader(out)
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rd)
			if err != nil {
				t.Fatalf("%s %d bytes: %v", c, n, err)
			}
			if !bytes.Equal(got, data[:n]) {
				t.Fatalf("%s %d bytes: decompressed data differs", c, n)
			}
		}
	}
}

// level is a fast zstd level: level 19's stream setup alone takes seconds
// under the race detector.
func level(c Compression) int {
	if c == Zstd {
		return 3
	}
	return 0
}
