package squashfs_test

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/nbimg/nbimg/squashfs"
)

// discard is an io.WriteSeeker that keeps nothing.
type discard struct{ pos, end int64 }

func (d *discard) Write(b []byte) (int, error) {
	d.pos += int64(len(b))
	d.end = max(d.end, d.pos)
	return len(b), nil
}

func (d *discard) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		d.pos = off
	case io.SeekCurrent:
		d.pos += off
	case io.SeekEnd:
		d.pos = d.end + off
	}
	return d.pos, nil
}

// BenchmarkWriteDir writes an image of $NBIMG_BENCH_DIR (for example
// /usr/lib) with $NBIMG_BENCH_COMP (default "zstd -Xcompression-level 6")
// and 1 MiB blocks, to profile where the time goes:
//
//	NBIMG_BENCH_DIR=/usr/lib go test -run '^$' -bench WriteDir -benchtime 1x -cpuprofile cpu.out ./squashfs/
func BenchmarkWriteDir(b *testing.B) {
	dir := os.Getenv("NBIMG_BENCH_DIR")
	if dir == "" {
		b.Skip("set NBIMG_BENCH_DIR to a directory to write")
	}
	spec := os.Getenv("NBIMG_BENCH_COMP")
	if spec == "" {
		spec = "zstd -Xcompression-level 6"
	}
	comp, err := squashfs.ParseCompressor(spec)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		tree, err := squashfs.DirTree(ctx, dir)
		if err != nil {
			b.Fatal(err)
		}
		st, err := squashfs.Write(ctx, &discard{}, tree, squashfs.Options{
			BlockSize: 1 << 20, Compressor: comp, AllRoot: true, MkfsTime: time.Unix(1, 0),
		})
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(st.InputBytes)
		b.ReportMetric(float64(st.OutputBytes)/float64(st.InputBytes), "ratio")
	}
}
