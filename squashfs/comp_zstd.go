package squashfs

import (
	"encoding/binary"
	"fmt"
)

// compZstd is zstd's id in the superblock.
const compZstd = 6

// defaultZstdLevel is mksquashfs 4.5's default level, which decides
// whether an options block is written.
const defaultZstdLevel = 15

// zstdCodec is zstd: -Xcompression-level 1..22. The encoder (libzstd with
// cgo, github.com/klauspost/compress without) is in zstd_cgo.go and
// zstd_purego.go; both write each block as one frame whose window is at
// most the block, as the kernel requires.
type zstdCodec struct{}

func (zstdCodec) id() uint16 { return compZstd }

func (zstdCodec) option(c *Compressor, name, val string) error {
	if name != "-Xcompression-level" {
		return unknownOption(name, "zstd")
	}
	n, err := parseLevel(val, 22)
	c.Level = n
	return err
}

func (zstdCodec) spec(c Compressor) string {
	if c.Level != 0 {
		return fmt.Sprintf("-Xcompression-level %d", c.Level)
	}
	return ""
}

func (zstdCodec) validate(c Compressor, _ int) error {
	if c.Level < 0 || c.Level > 22 {
		return fmt.Errorf("squashfs: zstd level %d is not in 1..22", c.Level)
	}
	return nil
}

func (zstdCodec) optionsBlock(c Compressor, _ int) []byte {
	if c.Level != 0 && c.Level != defaultZstdLevel {
		return binary.LittleEndian.AppendUint32(nil, uint32(c.Level))
	}
	return nil
}

func (zstdCodec) newEncoder(c Compressor, blockSize int) (encoder, error) {
	level := c.Level
	if level == 0 {
		level = defaultZstdLevel
	}
	return newZstdEncoder(level, blockSize)
}

func (zstdCodec) encoderName() string { return zstdEncoderName }
