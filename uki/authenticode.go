package uki

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"slices"
)

// hashHeaders feeds the header region of an image to h as Authenticode
// wants it: everything but the CheckSum field (at csOff) and the
// certificate table directory entry (at certDirOff, or none when < 0).
func hashHeaders(h hash.Hash, header []byte, csOff, certDirOff int) {
	h.Write(header[:csOff])
	if certDirOff < 0 {
		h.Write(header[csOff+4:])
		return
	}
	h.Write(header[csOff+4 : certDirOff])
	h.Write(header[certDirOff+8:])
}

// Digest returns the Authenticode SHA-256 digest of the PE image r of
// size bytes, parsed as p: the headers without the checksum and the
// certificate table entry, each section's raw data in file order, then
// whatever follows the last section up to the certificate table. It is
// the digest a signature covers and what firmware recomputes.
func Digest(r io.ReaderAt, p *PE) ([]byte, error) {
	h := sha256.New()
	hashHeaders(h, p.header, p.CheckSumOffset(), p.CertTableDirOffset())
	secs := slices.Clone(p.Sections)
	slices.SortStableFunc(secs, func(a, b SectionHeader) int {
		return int(int64(a.PointerToRawData) - int64(b.PointerToRawData))
	})
	end := int64(p.SizeOfHeaders)
	for _, s := range secs {
		if s.SizeOfRawData == 0 {
			continue
		}
		if _, err := io.Copy(h, io.NewSectionReader(r, int64(s.PointerToRawData), int64(s.SizeOfRawData))); err != nil {
			return nil, fmt.Errorf("uki: hashing section %s: %w", s.Name, err)
		}
		end = max(end, int64(s.PointerToRawData)+int64(s.SizeOfRawData))
	}
	dataEnd := p.size - int64(p.CertTableSize)
	if p.CertTableSize != 0 && int64(p.CertTableOffset) < dataEnd {
		return nil, fmt.Errorf("%w: the certificate table at %d+%d is not at the end of the file", ErrBadPE, p.CertTableOffset, p.CertTableSize)
	}
	if end < dataEnd {
		if _, err := io.Copy(h, io.NewSectionReader(r, end, dataEnd-end)); err != nil {
			return nil, fmt.Errorf("uki: hashing trailing data: %w", err)
		}
	}
	return h.Sum(nil), nil
}
