package uki_test

import (
	"bytes"
	"crypto/sha256"
	"debug/pe"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/uki"
	"github.com/nbimg/nbimg/uki/ukitest"
)

// contents are deterministic section contents of the given sizes; the
// initrd and kernel are incompressible and of odd sizes so that padding
// shows.
func contents(initrd, linux int) map[string][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	return map[string][]byte{
		uki.SectionOSRel:   []byte("NAME=NixOS\nID=nixos\nPRETTY_NAME=\"NixOS test\"\n"),
		uki.SectionCmdline: []byte("init=/nix/store/aaaa-nixos-system/init console=ttyS0"),
		uki.SectionUname:   []byte("6.1.0-test"),
		uki.SectionInitrd:  rnd(initrd),
		uki.SectionLinux:   rnd(linux),
	}
}

func sections(c map[string][]byte) []uki.Section {
	var s []uki.Section
	// Given in reverse: Write puts them in ukify's order.
	for i := len(uki.Order) - 1; i >= 0; i-- {
		if b, ok := c[uki.Order[i]]; ok {
			s = append(s, uki.Section{Name: uki.Order[i], Size: int64(len(b)), Data: bytes.NewReader(b)})
		}
	}
	return s
}

func writeUKI(t *testing.T, stub string, c map[string][]byte, signer *uki.Signer) (string, *uki.Layout) {
	t.Helper()
	f, err := os.Open(stub)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "uki.efi")
	o, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	lay, err := uki.Write(o, uki.Image{Stub: f, StubSize: st.Size(), Sections: sections(c), Signer: signer})
	if err != nil {
		o.Close()
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	return out, lay
}

func loadSigner(t *testing.T, key, cert string) *uki.Signer {
	t.Helper()
	k, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	s, err := uki.NewSigner(k, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLayoutObjdump checks the section table as binutils reads it: the
// stub's sections unchanged in memory, then ukify's sections in its order
// at section-aligned addresses, file offsets aligned, .linux last and
// code, and each section's bytes exactly as given.
func TestLayoutObjdump(t *testing.T) {
	stub := ukitest.Stub(t)
	c := contents(300001, 200003)
	out, lay := writeUKI(t, stub, c, nil)

	stubSecs := ukitest.Objdump(t, stub)
	got := ukitest.Objdump(t, out)
	sp, err := pe.Open(stub)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	oh := sp.OptionalHeader.(*pe.OptionalHeader64)
	salign, falign := uint64(oh.SectionAlignment), uint64(oh.FileAlignment)

	// objdump -h hides no section of ours; compare the stub's part.
	if len(got) != len(stubSecs)+5 {
		t.Fatalf("objdump lists %d sections, want %d + 5:\n%v", len(got), len(stubSecs), got)
	}
	for i, s := range stubSecs {
		g := got[i]
		if g.Name != s.Name || g.Size != s.Size || g.VMA != s.VMA || g.Flags != s.Flags {
			t.Errorf("stub section %d: got %v, want %v", i, g, s)
		}
	}
	var stubEnd uint64
	for _, s := range sp.Sections {
		stubEnd = max(stubEnd, uint64(s.VirtualAddress+max(s.VirtualSize, 1)))
	}
	want := []string{".osrel", ".cmdline", ".uname", ".initrd", ".linux"}
	next := (stubEnd + salign - 1) / salign * salign
	for i, name := range want {
		g := got[len(stubSecs)+i]
		if g.Name != name {
			t.Fatalf("section %d is %s, want %s (order %v)", len(stubSecs)+i, g.Name, name, want)
		}
		if g.VMA != next {
			t.Errorf("%s at %#x, want %#x (after the previous one, aligned to %#x)", name, g.VMA, next, salign)
		}
		if g.Size != uint64(len(c[name])) {
			t.Errorf("%s has size %#x, want %#x", name, g.Size, len(c[name]))
		}
		if g.FileOffset%falign != 0 {
			t.Errorf("%s at file offset %#x, not aligned to %#x", name, g.FileOffset, falign)
		}
		flags := "CONTENTS, ALLOC, LOAD, READONLY, DATA"
		if name == ".linux" {
			flags = "CONTENTS, ALLOC, LOAD, READONLY, CODE"
		}
		if g.Flags != flags {
			t.Errorf("%s flags %q, want %q", name, g.Flags, flags)
		}
		if b := ukitest.DumpSection(t, out, name); !bytes.Equal(b, c[name]) {
			t.Errorf("objcopy --dump-section %s: %d bytes (sha256 %x), want %d (sha256 %x)",
				name, len(b), sha256.Sum256(b), len(c[name]), sha256.Sum256(c[name]))
		}
		next = (g.VMA + g.Size + salign - 1) / salign * salign
	}

	// Go's debug/pe, another reader: SizeOfImage and the section data.
	f, err := pe.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if soi := uint64(f.OptionalHeader.(*pe.OptionalHeader64).SizeOfImage); soi != next {
		t.Errorf("SizeOfImage %#x, want %#x", soi, next)
	}
	if f.NumberOfSymbols != 0 || f.PointerToSymbolTable != 0 {
		t.Errorf("symbol table left: %d at %#x", f.NumberOfSymbols, f.PointerToSymbolTable)
	}
	for _, name := range want {
		s := f.Section(name)
		b, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b[:s.VirtualSize], c[name]) || len(bytes.Trim(b[s.VirtualSize:], "\x00")) != 0 {
			t.Errorf("debug/pe: %s differs from its input", name)
		}
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != lay.Size || lay.Signed {
		t.Errorf("layout says %d bytes signed=%v, file has %d", lay.Size, lay.Signed, st.Size())
	}
}

// TestCheckSum checks the PE checksum against the value the stub's
// linker wrote, and the written image against a recomputation.
func TestCheckSum(t *testing.T) {
	stub := ukitest.Stub(t)
	for _, file := range []string{stub, ""} {
		if file == "" {
			file, _ = writeUKI(t, stub, contents(1001, 999), nil)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		p, err := uki.Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		sum, err := uki.CheckSum(bytes.NewReader(b), int64(len(b)), p.CheckSumOffset())
		if err != nil {
			t.Fatal(err)
		}
		if sum != p.CheckSum || sum == 0 {
			t.Errorf("%s: checksum %#x, the file says %#x", file, sum, p.CheckSum)
		}
	}
}

// TestSignSbverify checks signatures with sbsigntool: the snakeoil
// signature verifies against its certificate, not against another one;
// the unsigned image and one signed by another key do not verify.
func TestSignSbverify(t *testing.T) {
	stub := ukitest.Stub(t)
	key, cert := ukitest.Snakeoil(t)
	otherKey, otherCert := ukitest.NewKey(t, "nbimg test other key")
	c := contents(70001, 50001)

	signed, lay := writeUKI(t, stub, c, loadSigner(t, key, cert))
	unsigned, ulay := writeUKI(t, stub, c, nil)
	other, _ := writeUKI(t, stub, c, loadSigner(t, otherKey, otherCert))

	if !lay.Signed || !bytes.Equal(lay.Digest, ulay.Digest) {
		t.Errorf("signed=%v digest %x, unsigned digest %x: the signature must not change the digest", lay.Signed, lay.Digest, ulay.Digest)
	}
	if out, ok := ukitest.Sbverify(t, cert, signed); !ok {
		t.Errorf("sbverify refuses the signed UKI:\n%s", out)
	}
	if out, ok := ukitest.Sbverify(t, cert, unsigned); ok {
		t.Errorf("sbverify accepts the unsigned UKI:\n%s", out)
	}
	if out, ok := ukitest.Sbverify(t, cert, other); ok {
		t.Errorf("sbverify --cert snakeoil accepts a UKI signed by another key:\n%s", out)
	}
	if out, ok := ukitest.Sbverify(t, otherCert, other); !ok {
		t.Errorf("sbverify refuses the UKI signed by the other key with its own certificate:\n%s", out)
	}
	if out, ok := ukitest.Sbverify(t, otherCert, signed); ok {
		t.Errorf("sbverify --cert other accepts the snakeoil-signed UKI:\n%s", out)
	}

	// A flipped byte in the command line breaks the signature.
	b, err := os.ReadFile(signed)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, c[uki.SectionCmdline])
	if i < 0 {
		t.Fatal("command line not found in the image")
	}
	b[i+len("init=/nix/store/")] ^= 1
	tampered := filepath.Join(t.TempDir(), "tampered.efi")
	if err := os.WriteFile(tampered, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, ok := ukitest.Sbverify(t, cert, tampered); ok {
		t.Errorf("sbverify accepts a UKI whose command line changed after signing:\n%s", out)
	}

	// Our own digest of the signed file matches the one signed.
	sb, err := os.ReadFile(signed)
	if err != nil {
		t.Fatal(err)
	}
	p, err := uki.Parse(bytes.NewReader(sb), int64(len(sb)))
	if err != nil {
		t.Fatal(err)
	}
	d, err := uki.Digest(bytes.NewReader(sb), p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d, lay.Digest) {
		t.Errorf("Digest of the signed file %x, signed digest %x", d, lay.Digest)
	}
	if p.CertTableOffset%8 != 0 || int64(p.CertTableOffset)+int64(p.CertTableSize) != int64(len(sb)) || p.CertTableSize%8 != 0 {
		t.Errorf("certificate table at %d+%d in a %d-byte file", p.CertTableOffset, p.CertTableSize, len(sb))
	}
	sum, err := uki.CheckSum(bytes.NewReader(sb), int64(len(sb)), p.CheckSumOffset())
	if err != nil {
		t.Fatal(err)
	}
	if sum != p.CheckSum {
		t.Errorf("signed file: checksum %#x, the file says %#x", sum, p.CheckSum)
	}
}

// TestReproducible writes the same signed UKI twice and compares; a
// changed command line changes the bytes.
func TestReproducible(t *testing.T) {
	stub := ukitest.Stub(t)
	key, cert := ukitest.Snakeoil(t)
	s := loadSigner(t, key, cert)
	c := contents(4097, 8191)
	a, _ := writeUKI(t, stub, c, s)
	b, _ := writeUKI(t, stub, c, s)
	c[uki.SectionCmdline] = append(c[uki.SectionCmdline], " quiet"...)
	d, _ := writeUKI(t, stub, c, s)
	sum := func(p string) [32]byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	if sum(a) != sum(b) {
		t.Error("two writes of the same signed UKI differ")
	}
	if sum(a) == sum(d) {
		t.Error("a changed command line left the UKI unchanged")
	}
}

type shortReader struct{}

func (shortReader) Read([]byte) (int, error) { return 0, io.EOF }

func TestWriteRejects(t *testing.T) {
	stub := ukitest.Stub(t)
	sb, err := os.ReadFile(stub)
	if err != nil {
		t.Fatal(err)
	}
	linux := uki.Section{Name: uki.SectionLinux, Size: 3, Data: strings.NewReader("abc")}
	for _, tc := range []struct {
		name string
		secs []uki.Section
		want error
	}{
		{"no linux", []uki.Section{{Name: uki.SectionCmdline, Size: 1, Data: strings.NewReader("x")}}, uki.ErrBadSection},
		{"unknown", []uki.Section{linux, {Name: ".foo", Size: 1, Data: strings.NewReader("x")}}, uki.ErrBadSection},
		{"twice", []uki.Section{linux, linux}, uki.ErrBadSection},
		{"empty", []uki.Section{linux, {Name: uki.SectionCmdline, Size: 0, Data: strings.NewReader("")}}, uki.ErrBadSection},
		{"short", []uki.Section{{Name: uki.SectionLinux, Size: 10, Data: shortReader{}}}, uki.ErrBadSection},
		{"long", []uki.Section{{Name: uki.SectionLinux, Size: 2, Data: strings.NewReader("abc")}}, uki.ErrBadSection},
		{"huge", []uki.Section{{Name: uki.SectionLinux, Size: 1 << 32, Data: strings.NewReader("abc")}}, uki.ErrBadSection},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "x.efi"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			_, err = uki.Write(f, uki.Image{Stub: bytes.NewReader(sb), StubSize: int64(len(sb)), Sections: tc.secs})
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// A UKI is not a stub, nor is a signed image.
	c := contents(10, 10)
	out, _ := writeUKI(t, stub, c, nil)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.Create(filepath.Join(t.TempDir(), "y.efi"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := uki.Write(w, uki.Image{Stub: f, StubSize: st.Size(), Sections: sections(c)}); !errors.Is(err, uki.ErrBadSection) {
		t.Errorf("a UKI as stub: err = %v", err)
	}
}
