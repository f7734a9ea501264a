package nixstore

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// header returns a kernel header of KernelHeaderSize bytes with magic at off.
func header(off int, magic string) []byte {
	b := make([]byte, KernelHeaderSize)
	copy(b[off:], magic)
	return b
}

func TestKernelArch(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  []byte
		want Arch
		ok   bool
	}{
		{"bzImage", header(0x202, "HdrS"), ArchX86_64, true},
		{"Image", header(56, "ARM\x64"), ArchAArch64, true},
		{"Image, short file", header(56, "ARM\x64")[:60], ArchAArch64, true},
		{"empty", nil, "", false},
		{"text", []byte("kernel"), "", false},
		{"gzip", append([]byte{0x1f, 0x8b}, make([]byte, 600)...), "", false},
		{"x86 magic cut short", header(0x202, "HdrS")[:0x204], "", false},
		{"arm magic one byte off", header(57, "ARM\x64"), "", false},
	} {
		got, ok := KernelArch(tc.hdr)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: KernelArch = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestDetectArch(t *testing.T) {
	bz, img, unknown := header(0x202, "HdrS"), header(56, "ARM\x64"), []byte("kernel")
	for _, tc := range []struct {
		system string
		hdr    []byte
		want   Arch
		err    bool
	}{
		{"x86_64-linux", bz, ArchX86_64, false},
		{"aarch64-linux", img, ArchAArch64, false},
		{"aarch64-linux\n", img, ArchAArch64, false},
		{"aarch64-linux", unknown, ArchAArch64, false},
		{"", img, ArchAArch64, false},
		{"", bz, ArchX86_64, false},
		{"", unknown, ArchX86_64, false},
		{"aarch64-linux", bz, "", true},
		{"x86_64-linux", img, "", true},
		{"riscv64-linux", unknown, "", true},
		{"i686-linux", bz, "", true},
	} {
		got, err := DetectArch(tc.system, tc.hdr)
		if tc.err {
			if err == nil || !errors.Is(err, ErrArch) {
				t.Errorf("DetectArch(%q, ...) = %q, %v; want an ErrArch error", tc.system, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("DetectArch(%q, ...) = %q, %v; want %q", tc.system, got, err, tc.want)
		}
	}
}

func TestArchNames(t *testing.T) {
	if ArchAArch64.KernelFile() != "Image" || ArchX86_64.KernelFile() != "bzImage" {
		t.Errorf("kernel files: %s, %s", ArchAArch64.KernelFile(), ArchX86_64.KernelFile())
	}
	for _, a := range []Arch{ArchX86_64, ArchAArch64} {
		got, err := ParseSystem(a.System())
		if err != nil || got != a {
			t.Errorf("ParseSystem(%q) = %q, %v", a.System(), got, err)
		}
	}
}

func TestCheckKernelFile(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "Image")
	if err := os.WriteFile(img, header(56, "ARM\x64"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckKernelFile(ArchAArch64, img); err != nil {
		t.Errorf("Image for aarch64: %v", err)
	}
	if err := CheckKernelFile(ArchX86_64, img); !errors.Is(err, ErrArch) {
		t.Errorf("Image for x86_64: %v, want ErrArch", err)
	}
	if err := CheckKernelFile(ArchX86_64, filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing kernel: %v", err)
	}
}

func TestReadKernelHeader(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := readKernelHeader(short)
	if err != nil || string(b) != "abc" {
		t.Errorf("readKernelHeader(short) = %q, %v", b, err)
	}
	if _, err := readKernelHeader(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("readKernelHeader(missing) = %v, want ErrNotExist", err)
	}
}

func FuzzDetectArch(f *testing.F) {
	f.Add("aarch64-linux", header(56, "ARM\x64"))
	f.Add("x86_64-linux", header(0x202, "HdrS"))
	f.Add("", []byte("kernel"))
	f.Fuzz(func(t *testing.T, system string, hdr []byte) {
		a, err := DetectArch(system, hdr)
		if err != nil {
			return
		}
		if a != ArchX86_64 && a != ArchAArch64 {
			t.Fatalf("DetectArch = %q", a)
		}
		if k, ok := KernelArch(hdr); ok && k != a {
			t.Fatalf("DetectArch = %q but the header says %q", a, k)
		}
	})
}

// TestReadToplevelArch: the toplevel's architecture comes from `system`,
// else from its kernel's header, and a kernel that contradicts `system`
// makes the toplevel unreadable.
func TestReadToplevelArch(t *testing.T) {
	root := t.TempDir()
	top := "/nix/store/3d2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-nixos-system-x-1"
	mkNixOS(t, root, top)
	kernel := filepath.Join(root, "/nix/store/4a2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-linux-6.1/bzImage")
	system := filepath.Join(root, top, "system")
	for _, tc := range []struct {
		system string // "" for no file
		kernel []byte
		want   Arch
		err    bool
	}{
		{"", []byte("k"), ArchX86_64, false},
		{"", header(56, "ARM\x64"), ArchAArch64, false},
		{"aarch64-linux\n", []byte("k"), ArchAArch64, false},
		{"aarch64-linux", header(56, "ARM\x64"), ArchAArch64, false},
		{"x86_64-linux", header(0x202, "HdrS"), ArchX86_64, false},
		{"aarch64-linux", header(0x202, "HdrS"), "", true},
		{"x86_64-linux", header(56, "ARM\x64"), "", true},
		{"armv7l-linux", []byte("k"), "", true},
	} {
		os.Remove(system)
		if tc.system != "" {
			if err := os.WriteFile(system, []byte(tc.system), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(kernel, tc.kernel, 0o644); err != nil {
			t.Fatal(err)
		}
		tl, err := ReadToplevel(top, root)
		if tc.err {
			if !errors.Is(err, ErrArch) {
				t.Errorf("system %q: ReadToplevel = %v, want an ErrArch error", tc.system, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("system %q: %v", tc.system, err)
			continue
		}
		if tl.Arch != tc.want {
			t.Errorf("system %q: Arch = %q, want %q", tc.system, tl.Arch, tc.want)
		}
	}
}
