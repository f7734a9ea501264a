//go:build !cgo

package binarycache

import (
	"io"

	"github.com/klauspost/compress/zstd"
)

// Without cgo, zstd is github.com/klauspost/compress, whose four speeds
// stand for libzstd's levels as zstd.EncoderLevelFromZstd maps them. The
// bytes differ from a cgo build's.
const zstdEncoderName = "github.com/klauspost/compress/zstd (pure Go, CGO_ENABLED=0)"

func zstdOptions(level int) []zstd.EOption {
	return []zstd.EOption{zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)), zstd.WithEncoderConcurrency(1)}
}

func zstdCompressAll(src []byte, level int) ([]byte, error) {
	enc, err := zstd.NewWriter(nil, zstdOptions(level)...)
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	return enc.EncodeAll(src, nil), nil
}

func zstdStream(w io.Writer, level int) (io.WriteCloser, error) {
	return zstd.NewWriter(w, zstdOptions(level)...)
}
