package squashfs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
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

// codec is everything the writer knows about one compressor. Each lives
// in a file of its own (comp_zstd.go, comp_gzip.go, comp_xz.go); codecs
// lists them.
type codec interface {
	// id is the compressor id in the superblock.
	id() uint16
	// option parses one -X option into c, or says what is wrong with it.
	option(c *Compressor, name, val string) error
	// spec is the -X options of c in ParseCompressor's syntax ("" for
	// the defaults).
	spec(c Compressor) string
	// validate checks c against the block size.
	validate(c Compressor, blockSize int) error
	// optionsBlock is the compressor options block, written when the
	// settings differ from mksquashfs's defaults, or nil.
	optionsBlock(c Compressor, blockSize int) []byte
	// newEncoder returns an encoder for blocks of at most blockSize bytes
	// (nil for a compressor that stores data as it is).
	newEncoder(c Compressor, blockSize int) (encoder, error)
	// encoderName describes the implementation.
	encoderName() string
}

// codecs are the compressors by name.
var codecs = map[string]codec{
	"zstd": zstdCodec{},
	"gzip": gzipCodec{},
	"xz":   xzCodec{},
	"none": noneCodec{},
}

// encoder compresses one block at a time; one per worker.
type encoder interface {
	// compress appends the compressed form of src to dst[:0].
	compress(dst, src []byte) ([]byte, error)
}

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
	cd, ok := codecs[c.Kind]
	if !ok {
		return Compressor{}, fmt.Errorf("%q: unknown compressor %q: %w", spec, c.Kind, ErrCompressor)
	}
	for opts := f[1:]; len(opts) > 0; opts = opts[2:] {
		if len(opts) < 2 {
			return Compressor{}, fmt.Errorf("%q: option %s needs a value: %w", spec, opts[0], ErrCompressor)
		}
		if err := cd.option(&c, opts[0], opts[1]); err != nil {
			return Compressor{}, fmt.Errorf("%q: %v: %w", spec, err, ErrCompressor)
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

// codec returns c's codec, or nil for an unknown kind.
func (c Compressor) codec() codec { return codecs[c.kind()] }

// String returns the spec in ParseCompressor's syntax.
func (c Compressor) String() string {
	cd := c.codec()
	if cd == nil {
		return c.Kind
	}
	if s := cd.spec(c); s != "" {
		return c.kind() + " " + s
	}
	return c.kind()
}

func (c Compressor) validate(blockSize int) error {
	cd := c.codec()
	if cd == nil {
		return fmt.Errorf("squashfs: %q: %w", c.Kind, ErrCompressor)
	}
	return cd.validate(c, blockSize)
}

func (c Compressor) id() uint16 { return c.codec().id() }

// options returns the compressor options block, or nil.
func (c Compressor) options(blockSize int) []byte { return c.codec().optionsBlock(c, blockSize) }

// newEncoder returns an encoder for blocks of at most blockSize bytes, or
// nil for "none".
func (c Compressor) newEncoder(blockSize int) (encoder, error) {
	return c.codec().newEncoder(c, blockSize)
}

// EncoderName describes the implementation that compresses with c, for
// example "libzstd 1.5.7 (cgo)".
func (c Compressor) EncoderName() string {
	if cd := c.codec(); cd != nil {
		return cd.encoderName()
	}
	return "unknown"
}

// IsZstd reports whether c compresses with zstd (whose encoder differs
// between cgo and pure-Go builds; see EncoderName).
func (c Compressor) IsZstd() bool { return c.kind() == "zstd" }

// parseLevel parses a -Xcompression-level value in 1..maxLevel.
func parseLevel(val string, maxLevel int) (int, error) {
	n, err := strconv.Atoi(val)
	if err != nil || n < 1 || n > maxLevel {
		return 0, fmt.Errorf("compression level %q is not in 1..%d", val, maxLevel)
	}
	return n, nil
}

func unknownOption(name, kind string) error {
	return fmt.Errorf("unknown option %s for %s", name, kind)
}

// noneCodec stores everything uncompressed; mksquashfs records it as gzip.
type noneCodec struct{}

func (noneCodec) id() uint16 { return compGzip }
func (noneCodec) option(_ *Compressor, _, _ string) error {
	return errors.New("none takes no options")
}
func (noneCodec) spec(Compressor) string                      { return "" }
func (noneCodec) validate(Compressor, int) error              { return nil }
func (noneCodec) optionsBlock(Compressor, int) []byte         { return nil }
func (noneCodec) newEncoder(Compressor, int) (encoder, error) { return nil, nil }
func (noneCodec) encoderName() string                         { return "none" }
