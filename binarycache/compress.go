package binarycache

import (
	"fmt"
	"io"

	"github.com/ulikunitz/xz"
)

// Compression names a NAR compression as narinfos spell it.
type Compression string

// The compressions Write can produce.
const (
	XZ   Compression = "xz"
	Zstd Compression = "zstd"
	None Compression = "none"
)

// ParseCompression accepts "xz", "zstd" or "none"; "" is xz, Nix's default.
func ParseCompression(s string) (Compression, error) {
	switch Compression(s) {
	case "", XZ:
		return XZ, nil
	case Zstd, None:
		return Compression(s), nil
	}
	return "", fmt.Errorf("binarycache: unknown compression %q: want xz, zstd or none", s)
}

// Ext returns the NAR file name's extension: ".nar.xz", ".nar.zst", ".nar".
func (c Compression) Ext() string {
	switch c {
	case XZ:
		return ".nar.xz"
	case Zstd:
		return ".nar.zst"
	}
	return ".nar"
}

// DefaultZstdLevel is the zstd level when Options.Level is 0.
const DefaultZstdLevel = 19

// ZstdEncoder names the zstd implementation this build uses; the bytes of
// a zstd cache depend on it.
const ZstdEncoder = zstdEncoderName

// compressor returns a writer that compresses into w; Close flushes it
// (and does not close w).
func (c Compression) compressor(w io.Writer, level int) (io.WriteCloser, error) {
	switch c {
	case XZ:
		zw, err := xz.WriterConfig{}.NewWriter(w)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		return zw, nil
	case Zstd:
		if level == 0 {
			level = DefaultZstdLevel
		}
		if level < 1 || level > 22 {
			return nil, fmt.Errorf("binarycache: zstd level %d is not in 1..22", level)
		}
		return newZstdWriter(w, level)
	case None:
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("binarycache: unknown compression %q", c)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
