package uki

import (
	"bytes"
	"encoding/binary"
	"io"
)

// KernelVersion returns the release of an x86 Linux kernel image
// (bzImage), as `uname -r` prints it once booted: the first word of the
// version string the boot protocol header points to (the kernel_version
// field, boot protocol 2.00 and later). It returns "" for other images,
// such as arm64's Image, whose version is not in a header.
func KernelVersion(r io.ReaderAt) string {
	var hdr [0x210]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return ""
	}
	le := binary.LittleEndian
	if !bytes.Equal(hdr[0x202:0x206], []byte("HdrS")) || le.Uint16(hdr[0x206:]) < 0x200 {
		return ""
	}
	ptr := le.Uint16(hdr[0x20e:])
	if ptr == 0 {
		return ""
	}
	var s [256]byte
	n, err := r.ReadAt(s[:], int64(ptr)+0x200)
	if n == 0 || (err != nil && err != io.EOF) {
		return ""
	}
	v := s[:n]
	if i := bytes.IndexAny(v, " \x00"); i >= 0 {
		v = v[:i]
	}
	for _, c := range v {
		if c <= ' ' || c >= 0x7f {
			return ""
		}
	}
	return string(v)
}
