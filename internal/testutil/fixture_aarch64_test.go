package testutil

import (
	"bytes"
	"debug/elf"
	"debug/pe"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadFixtureAArch64 checks the real aarch64 fixture, when built: an
// arm64 Image kernel named as NixOS names it, and arm64 programs.
func TestLoadFixtureAArch64(t *testing.T) {
	f := LoadFixtureAArch64(t)
	if filepath.Base(f.Kernel) != "Image" {
		t.Errorf("kernel %s: want NixOS's aarch64 name Image", f.Kernel)
	}
	img, err := os.ReadFile(f.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	// The arm64 boot protocol's header: magic "ARM\x64" at offset 56.
	if len(img) < 64 || !bytes.Equal(img[56:60], []byte("ARM\x64")) {
		t.Errorf("%s has no arm64 Image magic at offset 56", f.Kernel)
	}
	if !strings.Contains(f.KernelParams, "console=ttyAMA0") {
		t.Errorf("kernel-params %q do not name the virt machine's console ttyAMA0", f.KernelParams)
	}
	// The arm64 UKI stub, a PE for ARM64.
	stub, err := pe.Open(AArch64Stub(t, f))
	if err != nil {
		t.Fatalf("the arm64 stub: %v", err)
	}
	if stub.Machine != pe.IMAGE_FILE_MACHINE_ARM64 {
		t.Errorf("the arm64 stub is for machine %#x, want ARM64", stub.Machine)
	}
	stub.Close()
	for _, prog := range []string{"sw/bin/busybox", "sw/bin/kexec"} {
		p := filepath.Join(f.Toplevel, prog)
		if prog == "sw/bin/kexec" {
			// The wrapper runs the real program from libexec.
			p = filepath.Join(filepath.Dir(mustEval(t, p)), "..", "libexec", "kexec")
		}
		e, err := elf.Open(p)
		if err != nil {
			t.Fatalf("%s: %v", prog, err)
		}
		if e.Machine != elf.EM_AARCH64 {
			t.Errorf("%s is for %v, want EM_AARCH64", prog, e.Machine)
		}
		e.Close()
	}
}

func mustEval(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
