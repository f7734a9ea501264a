//go:build !cgo

package squashfs

import "github.com/klauspost/compress/zstd"

// Without cgo, zstd comes from github.com/klauspost/compress, which has four
// speeds instead of libzstd's 22 levels. Levels map as
// zstd.EncoderLevelFromZstd does: 1-2 SpeedFastest, 3-5 SpeedDefault, 6-9
// SpeedBetterCompression, 10-22 SpeedBestCompression. Output is larger
// than with libzstd at high levels (about 0.285 against 0.267 at level 19
// on binaries) and differs byte for byte from a cgo build.
//
// EncodeAll writes each block as one single-segment frame, so the window is
// the block itself, as the kernel requires; the streaming writer would
// declare an 8 MiB window the kernel refuses.
const zstdEncoderName = "github.com/klauspost/compress/zstd (pure Go, CGO_ENABLED=0)"

type zstdEncoder struct{ enc *zstd.Encoder }

func newZstdEncoder(level, _ int) (encoder, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderCRC(false),
		zstd.WithEncoderConcurrency(1),
		zstd.WithSingleSegment(true),
	)
	if err != nil {
		return nil, err
	}
	return &zstdEncoder{enc: enc}, nil
}

func (e *zstdEncoder) compress(dst, src []byte) ([]byte, error) {
	return e.enc.EncodeAll(src, dst[:0]), nil
}
