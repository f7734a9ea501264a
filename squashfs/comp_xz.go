package squashfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/ulikunitz/xz"
)

// compXz is xz's id in the superblock.
const compXz = 4

// xzCodec is xz: -Xdict-size as a size or a percentage of the block size,
// which must come to the block size (see validate). Streams carry CRC32
// checks: the kernel's decoder knows no CRC64.
type xzCodec struct{}

func (xzCodec) id() uint16 { return compXz }

func (xzCodec) option(c *Compressor, name, val string) error {
	if name != "-Xdict-size" {
		return unknownOption(name, "xz")
	}
	if p, ok := strings.CutSuffix(val, "%"); ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 100 {
			return fmt.Errorf("dictionary size %q is not a percentage in 1..100", val)
		}
		c.DictPercent, c.DictSize = n, 0
		return nil
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
		return fmt.Errorf("dictionary size %q is not a size of at most 1M", val)
	}
	c.DictSize, c.DictPercent = n*mult, 0
	return nil
}

func (xzCodec) spec(c Compressor) string {
	switch {
	case c.DictSize != 0:
		return fmt.Sprintf("-Xdict-size %d", c.DictSize)
	case c.DictPercent != 0:
		return fmt.Sprintf("-Xdict-size %d%%", c.DictPercent)
	}
	return ""
}

func (xzCodec) validate(c Compressor, blockSize int) error {
	d := xzDictSize(c, blockSize)
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
	return nil
}

func (xzCodec) optionsBlock(c Compressor, blockSize int) []byte {
	if d := xzDictSize(c, blockSize); d != blockSize {
		b := binary.LittleEndian.AppendUint32(nil, uint32(d))
		return binary.LittleEndian.AppendUint32(b, 0) // no BCJ filters
	}
	return nil
}

func (xzCodec) newEncoder(c Compressor, blockSize int) (encoder, error) {
	// Without an options block the kernel allows the block size, but at
	// least a metadata block.
	dict := max(blockSize, 8192)
	if c.DictSize != 0 || c.DictPercent != 0 {
		dict = xzDictSize(c, blockSize)
	}
	return &xzEncoder{dict: dict}, nil
}

func (xzCodec) encoderName() string { return "github.com/ulikunitz/xz (pure Go)" }

func xzDictSize(c Compressor, blockSize int) int {
	switch {
	case c.DictSize != 0:
		return c.DictSize
	case c.DictPercent != 0:
		return blockSize * c.DictPercent / 100
	}
	return blockSize
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
