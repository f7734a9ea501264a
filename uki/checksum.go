package uki

import (
	"encoding/binary"
	"io"
)

// checksum accumulates the PE image checksum: the 16-bit one's complement
// sum of the file's little-endian words (the CheckSum field counted as
// zero), folded to 16 bits, plus the file length. One's complement
// addition is order independent, so words may be added (or corrected) in
// any order.
type checksum struct {
	sum  uint64
	n    int64 // bytes written
	odd  bool  // a low byte is pending
	last byte
}

func (c *checksum) Write(b []byte) (int, error) {
	n := len(b)
	c.n += int64(n)
	if c.odd && len(b) > 0 {
		c.sum += uint64(c.last) | uint64(b[0])<<8
		b = b[1:]
		c.odd = false
	}
	for len(b) >= 8 {
		v := binary.LittleEndian.Uint64(b)
		c.sum += v&0xffff + v>>16&0xffff + v>>32&0xffff + v>>48
		b = b[8:]
		if c.sum >= 1<<62 {
			c.sum = fold(c.sum)
		}
	}
	for len(b) >= 2 {
		c.sum += uint64(binary.LittleEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		c.odd, c.last = true, b[0]
	}
	return n, nil
}

// addAt adds the bytes b at file offset off, where zeros were written
// before (a field patched after the fact).
func (c *checksum) addAt(off int64, b []byte) {
	for i, v := range b {
		if (off+int64(i))%2 == 0 {
			c.sum += uint64(v)
		} else {
			c.sum += uint64(v) << 8
		}
	}
}

func fold(s uint64) uint64 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return s
}

// value returns the checksum of the bytes written so far.
func (c *checksum) value() uint32 {
	s := c.sum
	if c.odd {
		s += uint64(c.last)
	}
	return uint32(fold(s)) + uint32(c.n)
}

// CheckSum computes the PE checksum of the image r of size bytes, whose
// CheckSum field is at csOff (PE.CheckSumOffset).
func CheckSum(r io.ReaderAt, size int64, csOff int) (uint32, error) {
	var c checksum
	if _, err := io.Copy(&c, io.NewSectionReader(r, 0, int64(csOff))); err != nil {
		return 0, err
	}
	c.Write(make([]byte, 4)) // the field counts as zeros
	if _, err := io.Copy(&c, io.NewSectionReader(r, int64(csOff)+4, size-int64(csOff)-4)); err != nil {
		return 0, err
	}
	return c.value(), nil
}
