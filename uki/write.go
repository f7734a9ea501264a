package uki

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Section names of a Unified Kernel Image (systemd's UKI specification).
const (
	SectionOSRel   = ".osrel"
	SectionCmdline = ".cmdline"
	SectionDTB     = ".dtb"
	SectionUname   = ".uname"
	SectionSplash  = ".splash"
	SectionInitrd  = ".initrd"
	SectionLinux   = ".linux"
)

// Order is the order ukify adds the sections in; Write follows it whatever
// order they are given in.
var Order = []string{SectionOSRel, SectionCmdline, SectionDTB, SectionUname, SectionSplash, SectionInitrd, SectionLinux}

// LargeImage is the size above which Write's callers should warn: UEFI
// firmware reads a whole image into memory below 4 GiB before starting
// it, and PXE/TFTP clients often fail well before that.
const LargeImage = 1 << 30

// ErrBadSection wraps the reasons a section cannot be added.
var ErrBadSection = errors.New("uki: invalid section")

// Section is one section to add: Size bytes read from Data.
type Section struct {
	Name string
	Size int64
	Data io.Reader
}

// Image describes a UKI to write.
type Image struct {
	// Stub is the EFI stub (systemd's linuxx64.efi.stub or
	// linuxaa64.efi.stub), StubSize bytes.
	Stub     io.ReaderAt
	StubSize int64
	// Sections are the sections to add, each name of Order at most once;
	// .linux is required.
	Sections []Section
	// Signer, when set, signs the image.
	Signer *Signer
}

// Layout describes a written image.
type Layout struct {
	// Machine is the stub's machine type (MachineAMD64, MachineARM64...).
	Machine uint16
	// Sections is the whole section table, the stub's sections first.
	Sections []SectionHeader
	// Size is the file size, signature included.
	Size int64
	// Digest is the Authenticode SHA-256 digest.
	Digest []byte
	// CheckSum is the PE checksum written in the optional header.
	CheckSum uint32
	// Signed reports whether a signature was appended.
	Signed bool
}

// plan is the new image's layout, computed before anything is written.
type plan struct {
	header []byte
	stub   []SectionHeader // stub sections with their new file offsets
	from   []uint32        // each stub section's old file offset
	added  []SectionHeader
	end    int64 // end of the last section's raw data
}

func sectionRank(name string) int { return slices.Index(Order, name) }

func layout(p *PE, secs []Section, sign bool) (*plan, error) {
	if p.CertTableOffset != 0 || p.CertTableSize != 0 {
		return nil, fmt.Errorf("%w: the stub is signed already: give the unsigned stub (a signature would not cover the added sections)", ErrBadPE)
	}
	if sign && p.CertTableDirOffset() < 0 {
		return nil, fmt.Errorf("%w: the stub's optional header has no certificate table entry, so it cannot be signed", ErrBadPE)
	}
	seen := map[string]bool{}
	for _, s := range secs {
		switch {
		case sectionRank(s.Name) < 0:
			return nil, fmt.Errorf("%w: %q is not a UKI section (%v)", ErrBadSection, s.Name, Order)
		case seen[s.Name]:
			return nil, fmt.Errorf("%w: %s given twice", ErrBadSection, s.Name)
		case s.Size <= 0:
			return nil, fmt.Errorf("%w: %s is empty", ErrBadSection, s.Name)
		case s.Size > 0xffffffff:
			return nil, fmt.Errorf("%w: %s has %d bytes: PE sections stop at 4 GiB", ErrBadSection, s.Name, s.Size)
		case s.Data == nil:
			return nil, fmt.Errorf("%w: %s has no data", ErrBadSection, s.Name)
		case p.Section(s.Name) != nil:
			return nil, fmt.Errorf("%w: the stub already has a %s section: is it a UKI rather than a stub?", ErrBadSection, s.Name)
		}
		seen[s.Name] = true
	}
	if !seen[SectionLinux] {
		return nil, fmt.Errorf("%w: no %s (the kernel)", ErrBadSection, SectionLinux)
	}
	secs = slices.Clone(secs)
	slices.SortFunc(secs, func(a, b Section) int { return sectionRank(a.Name) - sectionRank(b.Name) })

	fa, sa := int64(p.FileAlignment), int64(p.SectionAlignment)
	n := len(p.Sections) + len(secs)
	if n > maxSections {
		return nil, fmt.Errorf("%w: %d sections is more than a PE image may have", ErrBadSection, n)
	}
	tableEnd := int64(p.tableOff + n*sectionHeaderSize)
	hdrSize := alignUp(max(int64(p.SizeOfHeaders), tableEnd), fa)
	for _, s := range p.Sections {
		if int64(s.VirtualAddress) < hdrSize {
			return nil, fmt.Errorf("%w: no room for %d more section headers before section %s at 0x%x",
				ErrBadPE, len(secs), s.Name, s.VirtualAddress)
		}
	}
	pl := &plan{header: make([]byte, hdrSize)}
	copy(pl.header, p.header)
	le := binary.LittleEndian
	opt := pl.header[p.optOff:]

	// The stub's sections, packed after the headers at aligned offsets.
	off := hdrSize
	var vend uint64
	for _, s := range p.Sections {
		pl.from = append(pl.from, s.PointerToRawData)
		if s.SizeOfRawData > 0 {
			raw := alignUp(int64(s.SizeOfRawData), fa)
			if off+raw > 0xffffffff {
				return nil, fmt.Errorf("%w: stub section %s ends past 4 GiB", ErrBadPE, s.Name)
			}
			s.PointerToRawData, s.SizeOfRawData = uint32(off), uint32(raw)
			off += raw
		}
		vend = max(vend, s.end())
		pl.stub = append(pl.stub, s)
	}
	// The new sections after them, in memory and in the file.
	codeSize, dataSize := le.Uint32(opt[optSizeOfCode:]), le.Uint32(opt[optSizeOfInitData:])
	va := alignUp(int64(vend), sa)
	for _, s := range secs {
		h := SectionHeader{
			Name:             s.Name,
			VirtualSize:      uint32(s.Size),
			VirtualAddress:   uint32(va),
			SizeOfRawData:    uint32(alignUp(s.Size, fa)),
			PointerToRawData: uint32(off),
			Characteristics:  scnMemRead | scnCntInitData,
		}
		if s.Name == SectionLinux {
			h.Characteristics = scnMemRead | scnCntCode
			codeSize += h.VirtualSize
		} else {
			dataSize += h.VirtualSize
		}
		if va+s.Size > 0xffffffff || off+alignUp(s.Size, fa) > 0xffffffff {
			return nil, fmt.Errorf("%w: the image passes 4 GiB at %s, the PE format's limit", ErrBadSection, s.Name)
		}
		off += int64(h.SizeOfRawData)
		va = alignUp(va+s.Size, sa)
		pl.added = append(pl.added, h)
	}
	pl.end = off
	if va > 0xffffffff {
		return nil, fmt.Errorf("%w: SizeOfImage passes 4 GiB", ErrBadSection)
	}

	// Headers.
	coff := pl.header[p.coffOff:]
	le.PutUint16(coff[2:], uint16(n))
	if p.PointerToSymbolTable != 0 || p.NumberOfSymbols != 0 {
		le.PutUint32(coff[8:], 0)
		le.PutUint32(coff[12:], 0)
		le.PutUint16(coff[18:], p.Characteristics|fileLocalSymsStripped)
	}
	le.PutUint32(opt[optSizeOfCode:], codeSize)
	le.PutUint32(opt[optSizeOfInitData:], dataSize)
	le.PutUint32(opt[optSizeOfImage:], uint32(va))
	le.PutUint32(opt[optSizeOfHeaders:], uint32(hdrSize))
	le.PutUint32(opt[optCheckSum:], 0)
	for i, s := range slices.Concat(pl.stub, pl.added) {
		b := pl.header[p.tableOff+i*sectionHeaderSize:][:sectionHeaderSize]
		if i < len(pl.stub) {
			copy(b, s.raw[:])
		} else {
			clear(b)
			copy(b, s.Name)
			le.PutUint32(b[36:], s.Characteristics)
		}
		le.PutUint32(b[8:], s.VirtualSize)
		le.PutUint32(b[12:], s.VirtualAddress)
		le.PutUint32(b[16:], s.SizeOfRawData)
		le.PutUint32(b[20:], s.PointerToRawData)
	}
	return pl, nil
}

// counter counts the bytes written to w.
type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

var zeros [4096]byte

func pad(w io.Writer, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := w.Write(zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// Write writes the UKI img to w, which must be positioned where the image
// starts. It reads each section's data once, in order, and returns the
// layout it wrote. The file is complete only when Write returns nil: the
// checksum and the signature's place are patched in last.
func Write(w io.WriteSeeker, img Image) (*Layout, error) {
	p, err := Parse(img.Stub, img.StubSize)
	if err != nil {
		return nil, fmt.Errorf("stub: %w", err)
	}
	return write(w, p, img)
}

func write(w io.WriteSeeker, p *PE, img Image) (*Layout, error) {
	if img.Signer != nil {
		if err := img.Signer.check(); err != nil {
			return nil, err
		}
	}
	pl, err := layout(p, img.Sections, img.Signer != nil)
	if err != nil {
		return nil, err
	}
	base, err := w.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("uki: %w", err)
	}
	var cs checksum
	h := sha256.New()
	out := &counter{w: w}
	body := io.MultiWriter(out, &cs, h)

	csOff, certDir := p.CheckSumOffset(), p.CertTableDirOffset()
	if _, err := io.MultiWriter(out, &cs).Write(pl.header); err != nil {
		return nil, fmt.Errorf("uki: writing the headers: %w", err)
	}
	hashHeaders(h, pl.header, csOff, certDir)

	buf := make([]byte, 1<<20)
	for i, s := range pl.stub {
		if s.SizeOfRawData == 0 {
			continue
		}
		old := p.Sections[i].SizeOfRawData
		if _, err := io.CopyBuffer(body, io.NewSectionReader(img.Stub, int64(pl.from[i]), int64(old)), buf); err != nil {
			return nil, fmt.Errorf("uki: copying stub section %s: %w", s.Name, err)
		}
		if err := pad(body, int64(s.SizeOfRawData-old)); err != nil {
			return nil, fmt.Errorf("uki: %w", err)
		}
	}
	secs := slices.Clone(img.Sections)
	slices.SortFunc(secs, func(a, b Section) int { return sectionRank(a.Name) - sectionRank(b.Name) })
	for i, s := range secs {
		if out.n != int64(pl.added[i].PointerToRawData) {
			return nil, fmt.Errorf("uki: internal error: %s at %d, planned at %d", s.Name, out.n, pl.added[i].PointerToRawData)
		}
		n, err := io.CopyBuffer(body, io.LimitReader(s.Data, s.Size), buf)
		if err != nil {
			return nil, fmt.Errorf("uki: writing %s: %w", s.Name, err)
		}
		if n < s.Size {
			return nil, fmt.Errorf("%w: %s: its data ended after %d of %d bytes", ErrBadSection, s.Name, n, s.Size)
		}
		var one [1]byte
		if k, err := io.ReadFull(s.Data, one[:]); k > 0 {
			return nil, fmt.Errorf("%w: %s: its data is longer than %d bytes", ErrBadSection, s.Name, s.Size)
		} else if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("uki: reading %s: %w", s.Name, err)
		}
		if err := pad(body, int64(pl.added[i].SizeOfRawData)-s.Size); err != nil {
			return nil, fmt.Errorf("uki: %w", err)
		}
	}
	if out.n != pl.end {
		return nil, fmt.Errorf("uki: internal error: wrote %d bytes, planned %d", out.n, pl.end)
	}
	lay := &Layout{Machine: p.Machine, Sections: slices.Concat(pl.stub, pl.added), Digest: h.Sum(nil)}

	if img.Signer != nil {
		p7, err := img.Signer.SignedData(lay.Digest)
		if err != nil {
			return nil, err
		}
		tbl := certTable(p7)
		start := alignUp(out.n, 8)
		if err := pad(io.MultiWriter(out, &cs), start-out.n); err != nil {
			return nil, fmt.Errorf("uki: %w", err)
		}
		if _, err := io.MultiWriter(out, &cs).Write(tbl); err != nil {
			return nil, fmt.Errorf("uki: writing the signature: %w", err)
		}
		var dir [8]byte
		binary.LittleEndian.PutUint32(dir[:], uint32(start))
		binary.LittleEndian.PutUint32(dir[4:], uint32(len(tbl)))
		if err := patch(w, base+int64(certDir), dir[:]); err != nil {
			return nil, err
		}
		cs.addAt(int64(certDir), dir[:])
		lay.Signed = true
	}
	lay.Size = out.n
	lay.CheckSum = cs.value()
	var sum [4]byte
	binary.LittleEndian.PutUint32(sum[:], lay.CheckSum)
	if err := patch(w, base+int64(csOff), sum[:]); err != nil {
		return nil, err
	}
	if _, err := w.Seek(base+lay.Size, io.SeekStart); err != nil {
		return nil, fmt.Errorf("uki: %w", err)
	}
	return lay, nil
}

func patch(w io.WriteSeeker, off int64, b []byte) error {
	if _, err := w.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("uki: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("uki: patching the headers: %w", err)
	}
	return nil
}
