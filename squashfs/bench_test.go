package squashfs_test

import (
	"context"
	"math"
	"os"
	"testing"
	"time"

	"github.com/nbimg/nbimg/squashfs"
)

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
		st, err := squashfs.Write(ctx, &failingWriter{limit: math.MaxInt64}, tree, squashfs.Options{
			BlockSize: 1 << 20, Compressor: comp, AllRoot: true, MkfsTime: time.Unix(1, 0),
		})
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(st.InputBytes)
		b.ReportMetric(float64(st.OutputBytes)/float64(st.InputBytes), "ratio")
	}
}
