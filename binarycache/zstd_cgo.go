//go:build cgo

package binarycache

import (
	"io"

	"github.com/DataDog/zstd"
)

// With cgo, zstd is libzstd (bundled by github.com/DataDog/zstd), levels
// 1..22 as the zstd tool's.
const zstdEncoderName = "libzstd (github.com/DataDog/zstd, cgo)"

func zstdCompressAll(src []byte, level int) ([]byte, error) {
	return zstd.CompressLevel(nil, src, level)
}

func zstdStream(w io.Writer, level int) (io.WriteCloser, error) {
	return zstd.NewWriterLevel(w, level), nil
}
