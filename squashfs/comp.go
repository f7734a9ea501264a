package squashfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/klauspost/compress/zlib"
	"strconv"
	"strings"

	"github.com/ulikunitz/xz"
)

// Compressor names a compression method and its settings, in the terms of
// mksquashfs's -comp option. The zero value is zstd at mksquashfs's default
// level (15).
type Compressor struct {
	Kind        string // "zstd", "xz", "gzip" or "none"; "" means zstd
	Level       int    // zstd (1..22) or gzip (1..9) level; 0 means the default
	DictSize    int    // xz dictionary size in bytes; 0 means DictPercent or the block size
	DictPercent int    // xz dictionary size as a percentage of the block size
}

// Default levels of mksquashfs 4.5, which decide whether an options block
// is written.
const (
	defaultZstdLevel = 15
	defaultGzipLevel = 9
)

// compressor ids in the superblock.
const (
	compGzip = 1
	compXz   = 4
	compZstd = 6
)

// ErrCompressor is returned (wrapped) for compressor specs that are not
// understood.
var ErrCompressor = errors.New(`squashfs: unsupported compressor; accepted forms are ` +
	`"zstd [-Xcompression-level 1..22]", "xz [-Xdict-size 100%|BLOCKSIZE]" (a dictionary as large as the block), ` +
	`"gzip [-Xcompression-level 1..9]" and "none" (nothing compressed, like mksquashfs -noI -noId -noD -noF -noX)`)

// ParseCompressor parses a compressor spec as given to mksquashfs: the
// compressor name followed by its -X options, for example
// "zstd -Xcompression-level 19", "xz -Xdict-size 100%", "gzip" or "none".
func ParseCompressor(spec string) (Compressor, error) {
	f := strings.Fields(spec)
	if len(f) == 0 {
		return Compressor{}, fmt.Errorf("empty spec: %w", ErrCompressor)
	}
	c := Compressor{Kind: f[0]}
	opts := f[1:]
	bad := func(format string, args ...any) (Compressor, error) {
		return Compressor{}, fmt.Errorf("%q: %s: %w", spec, fmt.Sprintf(format, args...), ErrCompressor)
	}
	switch c.Kind {
	case "zstd", "xz", "gzip":
	case "none":
		if len(opts) > 0 {
			return bad("none takes no options")
		}
	default:
		return bad("unknown compressor %q", c.Kind)
	}
	for len(opts) > 0 {
		if len(opts) < 2 {
			return bad("option %s needs a value", opts[0])
		}
		name, val := opts[0], opts[1]
		opts = opts[2:]
		switch {
		case name == "-Xcompression-level" && (c.Kind == "zstd" || c.Kind == "gzip"):
			n, err := strconv.Atoi(val)
			max := 22
			if c.Kind == "gzip" {
				max = 9
			}
			if err != nil || n < 1 || n > max {
				return bad("compression level %q is not in 1..%d", val, max)
			}
			c.Level = n
		case name == "-Xdict-size" && c.Kind == "xz":
			if p, ok := strings.CutSuffix(val, "%"); ok {
				n, err := strconv.Atoi(p)
				if err != nil || n < 1 || n > 100 {
					return bad("dictionary size %q is not a percentage in 1..100", val)
				}
				c.DictPercent, c.DictSize = n, 0
				continue
			}
			mult := 1
			num := val
			if s, ok := strings.CutSuffix(strings.ToUpper(val), "K"); ok {
				num, mult = s, 1<<10
			} else if s, ok := strings.CutSuffix(strings.ToUpper(val), "M"); ok {
				num, mult = s, 1<<20
			}
			n, err := strconv.Atoi(num)
			if err != nil || n < 1 || n > (1<<20)/mult {
				return bad("dictionary size %q is not a size of at most 1M", val)
			}
			c.DictSize, c.DictPercent = n*mult, 0
		default:
			return bad("unknown option %s for %s", name, c.Kind)
		}
	}
	return c, nil
}

func (c Compressor) kind() string {
	if c.Kind == "" {
		return "zstd"
	}
	return c.Kind
}

// String returns the spec in ParseCompressor's syntax.
func (c Compressor) String() string {
	switch c.kind() {
	case "zstd", "gzip":
		if c.Level != 0 {
			return fmt.Sprintf("%s -Xcompression-level %d", c.kind(), c.Level)
		}
	case "xz":
		if c.DictSize != 0 {
			return fmt.Sprintf("xz -Xdict-size %d", c.DictSize)
		}
		if c.DictPercent != 0 {
			return fmt.Sprintf("xz -Xdict-size %d%%", c.DictPercent)
		}
	}
	return c.kind()
}

func (c Compressor) validate(blockSize int) error {
	switch c.kind() {
	case "zstd":
		if c.Level < 0 || c.Level > 22 {
			return fmt.Errorf("squashfs: zstd level %d is not in 1..22", c.Level)
		}
	case "gzip":
		if c.Level < 0 || c.Level > 9 {
			return fmt.Errorf("squashfs: gzip level %d is not in 1..9", c.Level)
		}
	case "xz":
		d := c.dictSize(blockSize)
		if d > blockSize {
			return fmt.Errorf("squashfs: xz dictionary size %d is larger than the block size (%d)", d, blockSize)
		}
		if d < blockSize {
			// github.com/ulikunitz/xz v0.5 writes corrupt streams when
			// incompressible input is longer than the dictionary.
			return fmt.Errorf("squashfs: xz dictionary size %d is smaller than the block size (%d): not supported, use -Xdict-size 100%%", d, blockSize)
		}
		// The kernel accepts 2^n and 2^n + 2^(n-1) only.
		if !(d&(d-1) == 0 || (d/3)&(d/3-1) == 0 && d%3 == 0) {
			return fmt.Errorf("squashfs: xz dictionary size %d must be 2^n or 2^n+2^(n-1)", d)
		}
	case "none":
	default:
		return fmt.Errorf("squashfs: %q: %w", c.Kind, ErrCompressor)
	}
	return nil
}

func (c Compressor) dictSize(blockSize int) int {
	switch {
	case c.DictSize != 0:
		return c.DictSize
	case c.DictPercent != 0:
		return blockSize * c.DictPercent / 100
	}
	return blockSize
}

// xzDict is the dictionary the kernel allows without an options block:
// the block size, but at least a metadata block.
func (c Compressor) xzDict(blockSize int) int {
	if c.DictSize == 0 && c.DictPercent == 0 {
		return max(blockSize, 8192)
	}
	return c.dictSize(blockSize)
}

func (c Compressor) id() uint16 {
	switch c.kind() {
	case "zstd":
		return compZstd
	case "xz":
		return compXz
	}
	return compGzip // also "none", as mksquashfs records it
}

// options returns the compressor options block, written when the settings
// differ from mksquashfs's defaults, or nil.
func (c Compressor) options(blockSize int) []byte {
	switch c.kind() {
	case "zstd":
		if c.Level != 0 && c.Level != defaultZstdLevel {
			return binary.LittleEndian.AppendUint32(nil, uint32(c.Level))
		}
	case "gzip":
		if c.Level != 0 && c.Level != defaultGzipLevel {
			b := binary.LittleEndian.AppendUint32(nil, uint32(c.Level))
			b = binary.LittleEndian.AppendUint16(b, 15)   // window bits
			return binary.LittleEndian.AppendUint16(b, 0) // strategies: default
		}
	case "xz":
		if d := c.dictSize(blockSize); d != blockSize {
			b := binary.LittleEndian.AppendUint32(nil, uint32(d))
			return binary.LittleEndian.AppendUint32(b, 0) // no BCJ filters
		}
	}
	return nil
}

// encoder compresses one block at a time; one per worker.
type encoder interface {
	// compress appends the compressed form of src to dst[:0].
	compress(dst, src []byte) ([]byte, error)
}

// newEncoder returns an encoder for blocks of at most blockSize bytes, or
// nil for "none".
func (c Compressor) newEncoder(blockSize int) (encoder, error) {
	switch c.kind() {
	case "zstd":
		level := c.Level
		if level == 0 {
			level = defaultZstdLevel
		}
		return newZstdEncoder(level, blockSize)
	case "gzip":
		level := c.Level
		if level == 0 {
			level = defaultGzipLevel
		}
		return &gzipEncoder{level: level}, nil
	case "xz":
		return &xzEncoder{dict: c.xzDict(blockSize)}, nil
	}
	return nil, nil
}

// EncoderName describes the implementation that compresses with c, for
// example "libzstd 1.5.7 (cgo)".
func (c Compressor) EncoderName() string {
	switch c.kind() {
	case "zstd":
		return zstdEncoderName
	case "gzip":
		return "github.com/klauspost/compress/zlib (pure Go)"
	case "xz":
		return "github.com/ulikunitz/xz (pure Go)"
	}
	return "none"
}

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

type xzEncoder struct {
	dict int
	buf  bytes.Buffer
}

func (e *xzEncoder) compress(dst, src []byte) ([]byte, error) {
	e.buf.Reset()
	// The kernel's xz decoder knows the CRC32 check (and none), not
	// xz-utils' default CRC64.
	w, err := xz.WriterConfig{DictCap: e.dict, CheckSum: xz.CRC32}.NewWriter(&e.buf)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(src); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return append(dst[:0], e.buf.Bytes()...), nil
}
