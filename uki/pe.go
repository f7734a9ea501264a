package uki

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrBadPE wraps every reason Parse rejects a file.
var ErrBadPE = errors.New("uki: not a usable PE/COFF image")

// PE/COFF constants (Microsoft PE format specification).
const (
	magicPE32     = 0x10b
	magicPE32Plus = 0x20b

	coffHeaderSize    = 20
	sectionHeaderSize = 40

	// Offsets in the optional header, the same for PE32 and PE32+.
	optSizeOfCode     = 4
	optSizeOfInitData = 8
	optSectionAlign   = 32
	optFileAlign      = 36
	optSizeOfImage    = 56
	optSizeOfHeaders  = 60
	optCheckSum       = 64

	// Where NumberOfRvaAndSizes and the data directories start.
	optNumDirs32     = 92
	optNumDirs32Plus = 108

	dirCertTable = 4 // index of the certificate table (security) directory

	// COFF characteristics and section flags.
	fileLocalSymsStripped = 0x0008
	scnCntCode            = 0x00000020
	scnCntInitData        = 0x00000040
	scnMemRead            = 0x40000000

	// maxHeaders bounds the header region Parse reads into memory.
	maxHeaders = 1 << 20
	// maxSections is the PE loader's limit.
	maxSections = 96
)

// Machine types of the stubs nbimg knows by name.
const (
	MachineI386  = 0x014c
	MachineAMD64 = 0x8664
	MachineARM64 = 0xaa64
)

// SectionHeader is one entry of a PE section table.
type SectionHeader struct {
	Name             string
	VirtualSize      uint32
	VirtualAddress   uint32
	SizeOfRawData    uint32
	PointerToRawData uint32
	Characteristics  uint32
	raw              [sectionHeaderSize]byte
}

// end returns the end of the section in memory: VirtualSize, or the raw
// size when VirtualSize is 0 (as loaders read it).
func (s *SectionHeader) end() uint64 {
	n := s.VirtualSize
	if n == 0 {
		n = s.SizeOfRawData
	}
	return uint64(s.VirtualAddress) + uint64(n)
}

// PE is a parsed PE/COFF executable image: what Write needs of a stub.
type PE struct {
	Machine              uint16
	PE32Plus             bool
	Characteristics      uint16
	SectionAlignment     uint32
	FileAlignment        uint32
	SizeOfHeaders        uint32
	SizeOfImage          uint32
	CheckSum             uint32
	PointerToSymbolTable uint32
	NumberOfSymbols      uint32
	// CertTable is the certificate table directory entry: file offset and
	// size of the Authenticode signatures, zero when unsigned.
	CertTableOffset, CertTableSize uint32
	Sections                       []SectionHeader

	size     int64  // file size
	header   []byte // [0, SizeOfHeaders)
	coffOff  int    // COFF file header
	optOff   int    // optional header
	numDirs  int    // data directories present in the optional header
	dirOff   int    // first data directory
	tableOff int    // section table
}

// Size returns the file size the image was parsed from.
func (p *PE) Size() int64 { return p.size }

// MachineName returns a short name of p's machine type ("x86-64",
// "arm64", ...).
func (p *PE) MachineName() string {
	switch p.Machine {
	case MachineAMD64:
		return "x86-64"
	case MachineARM64:
		return "arm64"
	case MachineI386:
		return "x86"
	}
	return fmt.Sprintf("machine 0x%04x", p.Machine)
}

// efiMachine reports whether m is the machine type of a UEFI platform:
// x86, x86-64, ARM (Thumb-2), arm64 and RISC-V 64.
func efiMachine(m uint16) bool {
	switch m {
	case MachineI386, MachineAMD64, 0x01c2, 0x01c4, MachineARM64, 0x5064:
		return true
	}
	return false
}

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadPE}, args...)...)
}

func isPow2(v uint32) bool { return v != 0 && v&(v-1) == 0 }

// Parse reads the headers and section table of the PE image r of size
// bytes and checks that they describe a file Write can extend: a PE32 or
// PE32+ image whose sections lie inside the file and inside the address
// space, with power-of-two alignments.
func Parse(r io.ReaderAt, size int64) (*PE, error) {
	if size < 64 {
		return nil, bad("%d bytes is too short", size)
	}
	var dos [64]byte
	if _, err := r.ReadAt(dos[:], 0); err != nil {
		return nil, fmt.Errorf("uki: reading the DOS header: %w", err)
	}
	if dos[0] != 'M' || dos[1] != 'Z' {
		return nil, bad("no MZ signature")
	}
	peOff := int64(binary.LittleEndian.Uint32(dos[0x3c:]))
	if peOff < 64 || peOff+4+coffHeaderSize > size || peOff > maxHeaders {
		return nil, bad("PE header offset %d is outside the file", peOff)
	}
	var coff [4 + coffHeaderSize]byte
	if _, err := r.ReadAt(coff[:], peOff); err != nil {
		return nil, fmt.Errorf("uki: reading the COFF header: %w", err)
	}
	if !bytes.Equal(coff[:4], []byte("PE\x00\x00")) {
		return nil, bad("no PE signature at offset %d", peOff)
	}
	le := binary.LittleEndian
	p := &PE{
		size:                 size,
		coffOff:              int(peOff) + 4,
		Machine:              le.Uint16(coff[4:]),
		PointerToSymbolTable: le.Uint32(coff[12:]),
		NumberOfSymbols:      le.Uint32(coff[16:]),
		Characteristics:      le.Uint16(coff[22:]),
	}
	if !efiMachine(p.Machine) {
		return nil, bad("machine type 0x%04x is not a UEFI architecture", p.Machine)
	}
	nsec := int(le.Uint16(coff[6:]))
	optSize := int(le.Uint16(coff[20:]))
	p.optOff = p.coffOff + coffHeaderSize
	p.tableOff = p.optOff + optSize
	if nsec == 0 || nsec > maxSections {
		return nil, bad("%d sections", nsec)
	}
	tableEnd := p.tableOff + nsec*sectionHeaderSize
	if int64(tableEnd) > size || tableEnd > maxHeaders {
		return nil, bad("section table ends at %d, past the end of the file", tableEnd)
	}
	// Read up to the end of the section table first: SizeOfHeaders is in
	// the optional header.
	head := make([]byte, tableEnd)
	if _, err := r.ReadAt(head, 0); err != nil {
		return nil, fmt.Errorf("uki: reading the headers: %w", err)
	}
	opt := head[p.optOff:p.tableOff]
	if len(opt) < 2 {
		return nil, bad("no optional header")
	}
	var numDirsAt int
	switch le.Uint16(opt) {
	case magicPE32:
		numDirsAt = optNumDirs32
	case magicPE32Plus:
		p.PE32Plus = true
		numDirsAt = optNumDirs32Plus
	default:
		return nil, bad("optional header magic 0x%x is neither PE32 nor PE32+", le.Uint16(opt))
	}
	if len(opt) < numDirsAt+4 {
		return nil, bad("optional header of %d bytes is too short", len(opt))
	}
	p.SectionAlignment = le.Uint32(opt[optSectionAlign:])
	p.FileAlignment = le.Uint32(opt[optFileAlign:])
	p.SizeOfImage = le.Uint32(opt[optSizeOfImage:])
	p.SizeOfHeaders = le.Uint32(opt[optSizeOfHeaders:])
	p.CheckSum = le.Uint32(opt[optCheckSum:])
	if !isPow2(p.FileAlignment) || !isPow2(p.SectionAlignment) || p.FileAlignment > 1<<16 ||
		p.SectionAlignment < p.FileAlignment {
		return nil, bad("section alignment 0x%x and file alignment 0x%x are not powers of two with the first at least the second",
			p.SectionAlignment, p.FileAlignment)
	}
	p.dirOff = p.optOff + numDirsAt + 4
	p.numDirs = min(int(le.Uint32(opt[numDirsAt:])), (len(opt)-numDirsAt-4)/8)
	if p.numDirs > dirCertTable {
		d := head[p.dirOff+8*dirCertTable:]
		p.CertTableOffset, p.CertTableSize = le.Uint32(d), le.Uint32(d[4:])
	}
	if int64(p.SizeOfHeaders) > size || p.SizeOfHeaders > maxHeaders {
		return nil, bad("SizeOfHeaders %d is past the end of the file", p.SizeOfHeaders)
	}
	if int(p.SizeOfHeaders) < tableEnd {
		return nil, bad("SizeOfHeaders %d is less than the end of the section table (%d)", p.SizeOfHeaders, tableEnd)
	}
	p.header = make([]byte, p.SizeOfHeaders)
	copy(p.header, head)
	if _, err := r.ReadAt(p.header[tableEnd:], int64(tableEnd)); err != nil {
		return nil, fmt.Errorf("uki: reading the headers: %w", err)
	}
	for i := 0; i < nsec; i++ {
		var s SectionHeader
		copy(s.raw[:], head[p.tableOff+i*sectionHeaderSize:])
		s.Name = strings.TrimRight(string(s.raw[:8]), "\x00")
		s.VirtualSize = le.Uint32(s.raw[8:])
		s.VirtualAddress = le.Uint32(s.raw[12:])
		s.SizeOfRawData = le.Uint32(s.raw[16:])
		s.PointerToRawData = le.Uint32(s.raw[20:])
		s.Characteristics = le.Uint32(s.raw[36:])
		if s.SizeOfRawData > 0 && int64(s.PointerToRawData)+int64(s.SizeOfRawData) > size {
			return nil, bad("section %d (%q) data at %d+%d is past the end of the file", i, s.Name, s.PointerToRawData, s.SizeOfRawData)
		}
		if s.SizeOfRawData > 0 && s.PointerToRawData < p.SizeOfHeaders {
			return nil, bad("section %d (%q) data at %d overlaps the headers", i, s.Name, s.PointerToRawData)
		}
		if s.end() > 1<<32 {
			return nil, bad("section %d (%q) ends past 4 GiB", i, s.Name)
		}
		if uint64(s.VirtualAddress) < uint64(p.SizeOfHeaders) {
			return nil, bad("section %d (%q) at address 0x%x overlaps the headers", i, s.Name, s.VirtualAddress)
		}
		// PointerToRelocations and NumberOfRelocations are zero in
		// images (PE format: "set to zero for executable images"); an
		// object file's relocations have no place in a UKI.
		if le.Uint32(s.raw[24:]) != 0 || le.Uint16(s.raw[32:]) != 0 {
			return nil, bad("section %d (%q) has COFF relocations: not an executable image", i, s.Name)
		}
		p.Sections = append(p.Sections, s)
	}
	return p, nil
}

// Section returns the section called name, or nil.
func (p *PE) Section(name string) *SectionHeader {
	for i := range p.Sections {
		if p.Sections[i].Name == name {
			return &p.Sections[i]
		}
	}
	return nil
}

// CertTableDirOffset returns the file offset of the certificate table's
// data directory entry, or -1 when the optional header has none.
func (p *PE) CertTableDirOffset() int {
	if p.numDirs <= dirCertTable {
		return -1
	}
	return p.dirOff + 8*dirCertTable
}

// CheckSumOffset returns the file offset of the optional header's
// CheckSum field.
func (p *PE) CheckSumOffset() int { return p.optOff + optCheckSum }
