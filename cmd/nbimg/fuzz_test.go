package main

import (
	"testing"

	"github.com/nbimg/nbimg/squashfs"
)

// FuzzCompressorSpec checks --comp parsing: a spec either is refused or
// round-trips through its canonical text, and the parse-time check of it
// against each block size never panics and agrees with itself.
func FuzzCompressorSpec(f *testing.F) {
	for _, s := range []string{"zstd", "zstd -Xcompression-level 1", "xz -Xdict-size 100%", "xz -Xdict-size 50%",
		"xz -Xdict-size 1M", "gzip -Xcompression-level 9", "none", "", "lz4", "zstd -Xcompression-level", "xz -Xdict-size 3K"} {
		f.Add(s, uint8(17))
	}
	f.Fuzz(func(t *testing.T, spec string, shift uint8) {
		c, err := squashfs.ParseCompressor(spec)
		if err != nil {
			return
		}
		again, err := squashfs.ParseCompressor(c.String())
		if err != nil || again != c {
			t.Fatalf("%q -> %q -> %+v, %v; want %+v", spec, c.String(), again, err, c)
		}
		bs := 1 << (12 + shift%9) // 4K..1M
		e1 := checkCompressor(squashfs.Options{Compressor: c, BlockSize: bs})
		e2 := checkCompressor(squashfs.Options{Compressor: again, BlockSize: bs})
		if (e1 == nil) != (e2 == nil) {
			t.Fatalf("%q at %d: %v vs %v", spec, bs, e1, e2)
		}
		if e1 != nil {
			if _, ok := e1.(usageError); !ok {
				t.Fatalf("%q: %T is not a usage error", spec, e1)
			}
		}
	})
}
