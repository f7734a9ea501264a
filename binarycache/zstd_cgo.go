//go:build cgo

package binarycache

import (
	"io"

	"github.com/DataDog/zstd"
)

// With cgo, zstd is libzstd (bundled by github.com/DataDog/zstd), one
// compression context per NAR, levels 1..22 as the zstd tool's.
const zstdEncoderName = "libzstd (github.com/DataDog/zstd, cgo)"

func newZstdWriter(w io.Writer, level int) (io.WriteCloser, error) {
	return zstd.NewWriterLevel(w, level), nil
}
