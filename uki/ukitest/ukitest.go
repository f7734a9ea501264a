// Package ukitest holds the independent checks of Unified Kernel Images
// that tests across nbimg share: the section table as binutils' objdump
// reads it, section bytes as objcopy extracts them, Authenticode
// signatures as sbsigntool's sbverify checks them, and Debian's files
// (systemd's EFI stubs, the snakeoil Secure Boot key of OVMF).
package ukitest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// Debian's files.
const (
	// StubX64 and StubAA64 are systemd-boot-efi's UKI stubs.
	StubX64  = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
	StubAA64 = "/usr/lib/systemd/boot/efi/linuxaa64.efi.stub"
	// SnakeoilKey (PEM, encrypted with SnakeoilPass) and SnakeoilCert are
	// the key and certificate that OVMF's *.snakeoil.fd variables enrol.
	SnakeoilKey  = "/usr/share/ovmf/PkKek-1-snakeoil.key"
	SnakeoilCert = "/usr/share/ovmf/PkKek-1-snakeoil.pem"
	SnakeoilPass = "snakeoil"
)

// Stub returns the x86-64 stub, skipping the test (failing it when tools
// are required) when systemd-boot-efi is not installed.
func Stub(t testing.TB) string {
	t.Helper()
	testutil.File(t, StubX64, "systemd-boot-efi")
	return StubX64
}

// Snakeoil returns the snakeoil key, decrypted with openssl into a
// temporary file, and its certificate.
func Snakeoil(t testing.TB) (key, cert string) {
	t.Helper()
	testutil.File(t, SnakeoilKey, "ovmf")
	testutil.File(t, SnakeoilCert, "ovmf")
	openssl := testutil.Tool(t, "openssl", "openssl")
	key = filepath.Join(t.TempDir(), "snakeoil.key")
	out, err := exec.Command(openssl, "pkey", "-in", SnakeoilKey, "-passin", "pass:"+SnakeoilPass, "-out", key).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl pkey: %v\n%s", err, out)
	}
	return key, SnakeoilCert
}

// NewKey makes a self-signed RSA key and certificate with openssl, for a
// signer the firmware and sbverify do not trust.
func NewKey(t testing.TB, cn string) (key, cert string) {
	t.Helper()
	openssl := testutil.Tool(t, "openssl", "openssl")
	dir := t.TempDir()
	key, cert = filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	out, err := exec.Command(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
		"-subj", "/CN="+cn, "-keyout", key, "-out", cert).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	return key, cert
}

// Sbverify runs `sbverify --cert cert file` and returns its output and
// whether it accepted the signature.
func Sbverify(t testing.TB, cert, file string) (string, bool) {
	t.Helper()
	bin := testutil.Tool(t, "sbverify", "sbsigntool")
	out, err := exec.Command(bin, "--cert", cert, file).CombinedOutput()
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatalf("sbverify: %v", err)
	}
	return string(out), err == nil
}

// ObjSection is one line of `objdump -h`.
type ObjSection struct {
	Name       string
	Size       uint64 // the section's size in memory
	VMA        uint64 // its address (ImageBase + RVA)
	FileOffset uint64
	Align      uint64
	Flags      string // CONTENTS, ALLOC, LOAD, READONLY, CODE, DATA...
}

// Binutils names the binutils programs that read the PE files of one
// architecture: the host's binutils read x86-64 PE files only; arm64 PE
// files (pei-aarch64-little) need the aarch64 cross binutils.
type Binutils struct {
	Objdump, Objcopy string
	Package          string // the Debian package holding them
}

// The binutils for x86-64 and arm64 UKIs.
var (
	BinutilsX64  = Binutils{Objdump: "objdump", Objcopy: "objcopy", Package: "binutils"}
	BinutilsAA64 = Binutils{Objdump: "aarch64-linux-gnu-objdump", Objcopy: "aarch64-linux-gnu-objcopy", Package: "binutils-aarch64-linux-gnu"}
)

// Objdump returns the sections of an x86-64 PE file as `objdump -h` lists
// them.
func Objdump(t testing.TB, file string) []ObjSection {
	t.Helper()
	return BinutilsX64.Sections(t, file)
}

// Sections returns the sections of a PE file as b's `objdump -h` lists
// them.
func (b Binutils) Sections(t testing.TB, file string) []ObjSection {
	t.Helper()
	bin := testutil.Tool(t, b.Objdump, b.Package)
	out, err := exec.Command(bin, "-h", file).CombinedOutput()
	if err != nil {
		t.Fatalf("%s -h %s: %v\n%s", b.Objdump, file, err, out)
	}
	var secs []ObjSection
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// "  0 .text  0000bff0  0000000000004000  0000000000004000  00000400  2**4"
		if len(f) != 7 || !strings.HasPrefix(f[6], "2**") {
			continue
		}
		if _, err := strconv.Atoi(f[0]); err != nil {
			continue
		}
		hex := func(s string) uint64 {
			v, err := strconv.ParseUint(s, 16, 64)
			if err != nil {
				t.Fatalf("objdump -h: %q: %v", sc.Text(), err)
			}
			return v
		}
		a, err := strconv.Atoi(strings.TrimPrefix(f[6], "2**"))
		if err != nil {
			t.Fatalf("objdump -h: %q: %v", sc.Text(), err)
		}
		s := ObjSection{Name: f[1], Size: hex(f[2]), VMA: hex(f[3]), FileOffset: hex(f[5]), Align: 1 << a}
		if sc.Scan() {
			s.Flags = strings.TrimSpace(sc.Text())
		}
		secs = append(secs, s)
	}
	if len(secs) == 0 {
		t.Fatalf("objdump -h %s lists no sections:\n%s", file, out)
	}
	return secs
}

// DumpSection returns the bytes of section name of an x86-64 PE file as
// `objcopy --dump-section` extracts them.
func DumpSection(t testing.TB, file, name string) []byte {
	t.Helper()
	return BinutilsX64.Section(t, file, name)
}

// Section returns the bytes of section name as b's `objcopy
// --dump-section` extracts them.
func (b Binutils) Section(t testing.TB, file, name string) []byte {
	t.Helper()
	bin := testutil.Tool(t, b.Objcopy, b.Package)
	dir := t.TempDir()
	dst := filepath.Join(dir, strings.TrimPrefix(name, "."))
	// objcopy writes an output file too: keep it out of the way.
	out, err := exec.Command(bin, "--dump-section", name+"="+dst, file, filepath.Join(dir, "copy.efi")).CombinedOutput()
	if err != nil {
		t.Fatalf("%s --dump-section %s: %v\n%s", b.Objcopy, name, err, out)
	}
	data, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// String describes s for test messages.
func (s ObjSection) String() string {
	return fmt.Sprintf("%s size=%#x vma=%#x off=%#x align=%d [%s]", s.Name, s.Size, s.VMA, s.FileOffset, s.Align, s.Flags)
}
