package initrd

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compression selects how the appended segment is compressed.
type Compression int

// Segment compressions. The encoders run single-threaded with fixed
// settings, so their output depends only on the input and on the encoder
// versions pinned in go.mod.
const (
	// None stores the segment as is: right for a squashfs image, which is
	// compressed already.
	None Compression = iota
	// Zstd is a single zstd frame (level "better", 8 MiB window, content
	// checksum), as the kernel's unzstd reads it.
	Zstd
	// Gzip is one gzip member at the default level, without name or time.
	Gzip
	// XZ is an xz stream with one LZMA2 filter and a CRC32 check: the only
	// check the kernel's xz decoder is guaranteed to support.
	XZ
)

// ErrUnknownCompression is returned by [ParseCompression].
var ErrUnknownCompression = errors.New("initrd: unknown compression")

var compressionNames = []string{None: "none", Zstd: "zstd", Gzip: "gzip", XZ: "xz"}

// String returns the name ParseCompression accepts.
func (c Compression) String() string {
	if c >= 0 && int(c) < len(compressionNames) {
		return compressionNames[c]
	}
	return fmt.Sprintf("compression(%d)", int(c))
}

// ParseCompression parses "none", "zstd", "gzip" or "xz".
func ParseCompression(s string) (Compression, error) {
	for i, n := range compressionNames {
		if s == n {
			return Compression(i), nil
		}
	}
	return None, fmt.Errorf("%w %q: use one of %s", ErrUnknownCompression, s, strings.Join(compressionNames, ", "))
}

// newCompressor wraps w in the encoder for c. Close flushes the encoder but
// does not close w.
func newCompressor(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case None:
		return nopWriteCloser{w}, nil
	case Zstd:
		return zstd.NewWriter(w,
			zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(8<<20),
			zstd.WithEncoderCRC(true),
			zstd.WithZeroFrames(true),
		)
	case Gzip:
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	case XZ:
		return xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 8 << 20}.NewWriter(w)
	}
	return nil, fmt.Errorf("%w %v", ErrUnknownCompression, c)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
