package binarycache

import (
	"bytes"
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
		return &oneShotWriter{w: w, all: xzAll, stream: xzStream}, nil
	case Zstd:
		if level == 0 {
			level = DefaultZstdLevel
		}
		if level < 1 || level > 22 {
			return nil, fmt.Errorf("binarycache: zstd level %d is not in 1..22", level)
		}
		return &oneShotWriter{
			w:      w,
			all:    func(src []byte) ([]byte, error) { return zstdCompressAll(src, level) },
			stream: func(w io.Writer) (io.WriteCloser, error) { return zstdStream(w, level) },
		}, nil
	case None:
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("binarycache: unknown compression %q", c)
}

// xzMaxDict is the xz dictionary of NARs larger than it: xz's default.
var xzMaxDict = 8 << 20 // a variable for tests

// xzAll compresses a whole NAR with a dictionary no larger than the NAR
// (at least 64 KiB): setting up an 8 MiB one costs ~0.1 s, more than
// compressing a small NAR.
func xzAll(src []byte) ([]byte, error) {
	dict := 64 << 10
	for dict < len(src) && dict < xzMaxDict {
		dict *= 2
	}
	var b bytes.Buffer
	zw, err := xz.WriterConfig{DictCap: dict}.NewWriter(&b)
	if err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	if _, err := zw.Write(src); err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	return b.Bytes(), nil
}

func xzStream(w io.Writer) (io.WriteCloser, error) {
	zw, err := xz.WriterConfig{DictCap: xzMaxDict}.NewWriter(w)
	if err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	return zw, nil
}

// oneShotLimit is the largest NAR compressed in one call. A streaming
// compressor does not know the input's size and sets up the largest
// window and tables (8 MiB for xz, tens of MiB for zstd at level 19) for
// every NAR, which costs more than compressing a small one; given the
// whole input, they are sized to it. Which way a NAR goes depends only on
// its size, so the bytes are the same on every run.
var oneShotLimit = 16 << 20 // a variable for tests

// oneShotWriter buffers up to oneShotLimit bytes and compresses them in
// one call at Close, or turns into a stream once the NAR is larger.
type oneShotWriter struct {
	w      io.Writer
	all    func(src []byte) ([]byte, error)
	stream func(w io.Writer) (io.WriteCloser, error)
	buf    []byte
	s      io.WriteCloser
}

func (z *oneShotWriter) Write(p []byte) (int, error) {
	if z.s == nil && len(z.buf)+len(p) <= oneShotLimit {
		z.buf = append(z.buf, p...)
		return len(p), nil
	}
	if z.s == nil {
		s, err := z.stream(z.w)
		if err != nil {
			return 0, err
		}
		z.s = s
		if _, err := s.Write(z.buf); err != nil {
			return 0, err
		}
		z.buf = nil
	}
	return z.s.Write(p)
}

func (z *oneShotWriter) Close() error {
	if z.s != nil {
		return z.s.Close()
	}
	out, err := z.all(z.buf)
	if err != nil {
		return err
	}
	z.buf = nil
	_, err = z.w.Write(out)
	return err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
