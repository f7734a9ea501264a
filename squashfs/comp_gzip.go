package squashfs

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/klauspost/compress/zlib"
)

// compGzip is gzip's id in the superblock (also used for "none").
const compGzip = 1

// defaultGzipLevel is mksquashfs 4.5's default level.
const defaultGzipLevel = 9

// gzipCodec is gzip (zlib streams): -Xcompression-level 1..9.
type gzipCodec struct{}

func (gzipCodec) id() uint16 { return compGzip }

func (gzipCodec) option(c *Compressor, name, val string) error {
	if name != "-Xcompression-level" {
		return unknownOption(name, "gzip")
	}
	n, err := parseLevel(val, 9)
	c.Level = n
	return err
}

func (gzipCodec) spec(c Compressor) string {
	if c.Level != 0 {
		return fmt.Sprintf("-Xcompression-level %d", c.Level)
	}
	return ""
}

func (gzipCodec) validate(c Compressor, _ int) error {
	if c.Level < 0 || c.Level > 9 {
		return fmt.Errorf("squashfs: gzip level %d is not in 1..9", c.Level)
	}
	return nil
}

func (gzipCodec) optionsBlock(c Compressor, _ int) []byte {
	if c.Level != 0 && c.Level != defaultGzipLevel {
		b := binary.LittleEndian.AppendUint32(nil, uint32(c.Level))
		b = binary.LittleEndian.AppendUint16(b, 15)   // window bits
		return binary.LittleEndian.AppendUint16(b, 0) // strategies: default
	}
	return nil
}

func (gzipCodec) newEncoder(c Compressor, _ int) (encoder, error) {
	level := c.Level
	if level == 0 {
		level = defaultGzipLevel
	}
	return &gzipEncoder{level: level}, nil
}

func (gzipCodec) encoderName() string { return "github.com/klauspost/compress/zlib (pure Go)" }

type gzipEncoder struct {
	level int
	buf   bytes.Buffer
	w     *zlib.Writer
}

func (e *gzipEncoder) compress(dst, src []byte) ([]byte, error) {
	e.buf.Reset()
	if e.w == nil {
		w, err := zlib.NewWriterLevel(&e.buf, e.level)
		if err != nil {
			return nil, err
		}
		e.w = w
	} else {
		e.w.Reset(&e.buf)
	}
	if _, err := e.w.Write(src); err != nil {
		return nil, err
	}
	if err := e.w.Close(); err != nil {
		return nil, err
	}
	return append(dst[:0], e.buf.Bytes()...), nil
}
