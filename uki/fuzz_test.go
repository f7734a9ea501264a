package uki

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// miniStub builds a small PE32+ EFI application: two sections (.text and
// .data) at 0x1000 and 0x2000, file alignment 0x200, and, when symbols is
// set, a COFF symbol table at the end as objcopy leaves one.
func miniStub(symbols bool) []byte {
	le := binary.LittleEndian
	b := make([]byte, 0x600)
	b[0], b[1] = 'M', 'Z'
	le.PutUint32(b[0x3c:], 0x80)
	copy(b[0x80:], "PE\x00\x00")
	coff := b[0x84:]
	le.PutUint16(coff[0:], MachineAMD64)
	le.PutUint16(coff[2:], 2)
	le.PutUint16(coff[16:], 240)
	le.PutUint16(coff[18:], 0x0206)
	opt := b[0x98:]
	le.PutUint16(opt[0:], magicPE32Plus)
	le.PutUint32(opt[optSizeOfCode:], 0x200)
	le.PutUint32(opt[optSizeOfInitData:], 0x200)
	le.PutUint32(opt[16:], 0x1000) // entry point
	le.PutUint32(opt[optSectionAlign:], 0x1000)
	le.PutUint32(opt[optFileAlign:], 0x200)
	le.PutUint32(opt[optSizeOfImage:], 0x3000)
	le.PutUint32(opt[optSizeOfHeaders:], 0x200)
	le.PutUint16(opt[68:], 10) // EFI application
	le.PutUint32(opt[optNumDirs32Plus:], 16)
	tbl := b[0x98+240:]
	for i, s := range []struct {
		name      string
		va, raw   uint32
		ptr, char uint32
	}{{".text", 0x1000, 0x200, 0x200, scnCntCode | scnMemRead | 0x20000000}, {".data", 0x2000, 0x200, 0x400, scnCntInitData | scnMemRead}} {
		h := tbl[i*sectionHeaderSize:]
		copy(h, s.name)
		le.PutUint32(h[8:], 0x100)
		le.PutUint32(h[12:], s.va)
		le.PutUint32(h[16:], s.raw)
		le.PutUint32(h[20:], s.ptr)
		le.PutUint32(h[36:], s.char)
		for j := range 0x100 {
			b[int(s.ptr)+j] = byte(i*0x40 + j)
		}
	}
	if symbols {
		le.PutUint32(coff[8:], 0x600)
		le.PutUint32(coff[12:], 1)
		sym := make([]byte, 18+4)
		copy(sym, "sym")
		le.PutUint32(sym[18:], 4) // empty string table
		b = append(b, sym...)
	}
	return b
}

// FuzzParse feeds arbitrary bytes to Parse; whatever it accepts must be
// writable into a UKI that Go's debug/pe reads back with the added
// sections' bytes.
func FuzzParse(f *testing.F) {
	f.Add(miniStub(false))
	f.Add(miniStub(true))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		if len(p.Sections) == 0 || p.SizeOfHeaders > uint32(len(b)) {
			t.Fatalf("accepted %d sections, headers %d of %d bytes", len(p.Sections), p.SizeOfHeaders, len(b))
		}
		if _, err := Digest(bytes.NewReader(b), p); err != nil && p.CertTableSize == 0 {
			t.Fatalf("Digest of a parsed image: %v", err)
		}
		var w seekBuffer
		lay, err := write(&w, p, Image{Stub: bytes.NewReader(b), StubSize: int64(len(b)), Sections: []Section{
			{Name: SectionCmdline, Size: 5, Data: bytes.NewReader([]byte("quiet"))},
			{Name: SectionLinux, Size: 3, Data: bytes.NewReader([]byte("abc"))},
		}})
		if err != nil {
			return // no room, signed stub, sections named like ours...
		}
		checkWritten(t, w.b, lay, map[string]string{SectionCmdline: "quiet", SectionLinux: "abc"})
	})
}

// FuzzWrite writes UKIs with arbitrary section contents over the small
// stub and reads them back.
func FuzzWrite(f *testing.F) {
	f.Add([]byte("init=/nix/store/x/init"), []byte("kernel"), []byte("initrd"), false)
	f.Add([]byte("a"), bytes.Repeat([]byte{0}, 1000), []byte{1}, true)
	f.Fuzz(func(t *testing.T, cmdline, linux, initrd []byte, symbols bool) {
		if len(cmdline) == 0 || len(linux) == 0 || len(initrd) == 0 {
			return
		}
		stub := miniStub(symbols)
		var w seekBuffer
		lay, err := Write(&w, Image{Stub: bytes.NewReader(stub), StubSize: int64(len(stub)), Sections: []Section{
			{Name: SectionLinux, Size: int64(len(linux)), Data: bytes.NewReader(linux)},
			{Name: SectionInitrd, Size: int64(len(initrd)), Data: bytes.NewReader(initrd)},
			{Name: SectionCmdline, Size: int64(len(cmdline)), Data: bytes.NewReader(cmdline)},
		}})
		if err != nil {
			t.Fatal(err)
		}
		checkWritten(t, w.b, lay, map[string]string{SectionCmdline: string(cmdline), SectionLinux: string(linux), SectionInitrd: string(initrd)})
	})
}

// checkWritten reads a written image with debug/pe and with Parse.
func checkWritten(t *testing.T, b []byte, lay *Layout, want map[string]string) {
	t.Helper()
	if int64(len(b)) != lay.Size {
		t.Fatalf("layout says %d bytes, wrote %d", lay.Size, len(b))
	}
	f, err := pe.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("debug/pe: %v", err)
	}
	for name, data := range want {
		s := f.Section(name)
		if s == nil {
			t.Fatalf("debug/pe finds no %s", name)
		}
		got, err := io.ReadAll(io.LimitReader(s.Open(), int64(s.VirtualSize)))
		if err != nil || string(got) != data {
			t.Fatalf("%s: %q, %v; want %q", name, got, err, data)
		}
	}
	if last := f.Sections[len(f.Sections)-1]; last.Name != SectionLinux {
		t.Fatalf("last section %s, want .linux", last.Name)
	}
	p, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("Parse of a written image: %v", err)
	}
	sum, err := CheckSum(bytes.NewReader(b), int64(len(b)), p.CheckSumOffset())
	if err != nil || sum != p.CheckSum || sum != lay.CheckSum {
		t.Fatalf("checksum %#x (%v), header %#x, layout %#x", sum, err, p.CheckSum, lay.CheckSum)
	}
	d, err := Digest(bytes.NewReader(b), p)
	if err != nil || !bytes.Equal(d, lay.Digest) {
		t.Fatalf("Digest %x (%v), layout %x", d, err, lay.Digest)
	}
	// Sections in the file: contiguous from the headers, aligned.
	end := int64(p.SizeOfHeaders)
	for _, s := range p.Sections {
		if s.SizeOfRawData == 0 {
			continue
		}
		if int64(s.PointerToRawData) != end || s.PointerToRawData%p.FileAlignment != 0 {
			t.Fatalf("section %s at %#x, want %#x", s.Name, s.PointerToRawData, end)
		}
		end += int64(s.SizeOfRawData)
	}
	if end != lay.Size {
		t.Fatalf("sections end at %d, file at %d", end, lay.Size)
	}
}

// seekBuffer is an in-memory io.WriteSeeker.
type seekBuffer struct {
	b   []byte
	off int64
}

func (s *seekBuffer) Write(p []byte) (int, error) {
	if end := s.off + int64(len(p)); end > int64(len(s.b)) {
		s.b = append(s.b, make([]byte, end-int64(len(s.b)))...)
	}
	copy(s.b[s.off:], p)
	s.off += int64(len(p))
	return len(p), nil
}

func (s *seekBuffer) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += s.off
	case io.SeekEnd:
		off += int64(len(s.b))
	}
	s.off = off
	return off, nil
}

// TestMiniStubSymbols checks that the symbol table is dropped and the
// file flagged stripped.
func TestMiniStubSymbols(t *testing.T) {
	stub := miniStub(true)
	var w seekBuffer
	lay, err := Write(&w, Image{Stub: bytes.NewReader(stub), StubSize: int64(len(stub)), Sections: []Section{
		{Name: SectionLinux, Size: 1, Data: bytes.NewReader([]byte{1})},
	}})
	if err != nil {
		t.Fatal(err)
	}
	checkWritten(t, w.b, lay, map[string]string{SectionLinux: "\x01"})
	f, err := pe.NewFile(bytes.NewReader(w.b))
	if err != nil {
		t.Fatal(err)
	}
	if f.NumberOfSymbols != 0 || f.PointerToSymbolTable != 0 || f.Characteristics&fileLocalSymsStripped == 0 {
		t.Errorf("symbols %d at %#x, characteristics %#x", f.NumberOfSymbols, f.PointerToSymbolTable, f.Characteristics)
	}
	if got := lay.Sections[2]; got.VirtualAddress != 0x3000 || got.PointerToRawData != 0x600 {
		t.Errorf(".linux at %#x, file %#x; want 0x3000, 0x600", got.VirtualAddress, got.PointerToRawData)
	}
}

// TestSeedCorpus keeps testdata/fuzz/FuzzParse in step with miniStub
// (run with -update-seeds to rewrite it).
func TestSeedCorpus(t *testing.T) {
	for i, sym := range []bool{false, true} {
		want := []byte("go test fuzz v1\n[]byte(" + quote(miniStub(sym)) + ")\n")
		p := filepath.Join("testdata", "fuzz", "FuzzParse", []string{"ministub", "ministub-symbols"}[i])
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			if os.Getenv("NBIMG_UPDATE_SEEDS") == "1" {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("%s is stale or missing (%v): NBIMG_UPDATE_SEEDS=1 go test ./uki -run TestSeedCorpus", p, err)
		}
	}
}

func quote(b []byte) string {
	var s bytes.Buffer
	s.WriteByte('"')
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			s.WriteByte('\\')
			s.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			s.WriteByte(c)
		default:
			s.WriteString(`\x`)
			s.WriteString(string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15]))
		}
	}
	s.WriteByte('"')
	return s.String()
}

// TestParseRefusesRelocations: a section header with COFF relocations
// (an object file's, never an image's) is refused by name, as the fuzzer
// found when debug/pe could not read such a UKI back.
func TestParseRefusesRelocations(t *testing.T) {
	for _, field := range []int{24, 32} { // PointerToRelocations, NumberOfRelocations
		b := miniStub(false)
		h := b[0x98+240+sectionHeaderSize:] // the second section, .data
		if field == 24 {
			binary.LittleEndian.PutUint32(h[field:], 0x10000)
		} else {
			binary.LittleEndian.PutUint16(h[field:], 3)
		}
		_, err := Parse(bytes.NewReader(b), int64(len(b)))
		if err == nil || !strings.Contains(err.Error(), `section 1 (".data") has COFF relocations`) {
			t.Errorf("relocation field at %d: %v, want a refusal naming .data", field, err)
		}
	}
	if _, err := Parse(bytes.NewReader(miniStub(false)), int64(len(miniStub(false)))); err != nil {
		t.Fatalf("the unchanged stub: %v", err)
	}
}
