//go:build cgo

package squashfs

import "github.com/DataDog/zstd"

// With cgo, zstd levels are libzstd's own (github.com/DataDog/zstd bundles
// it). Each worker has one compression context. libzstd sizes the window to
// the input, so every block is one single-segment frame whose window is at
// most the block size, as the kernel requires.
const zstdEncoderName = "libzstd (github.com/DataDog/zstd v1.5.7, cgo)"

type zstdEncoder struct {
	ctx   zstd.Ctx
	level int
}

func newZstdEncoder(level, _ int) (encoder, error) {
	return &zstdEncoder{ctx: zstd.NewCtx(), level: level}, nil
}

func (e *zstdEncoder) compress(dst, src []byte) ([]byte, error) {
	return e.ctx.CompressLevel(dst[:cap(dst)], src, e.level)
}
