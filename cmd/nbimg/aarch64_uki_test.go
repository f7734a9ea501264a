package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/uki/ukitest"
)

// TestAArch64UKIStub: an aarch64 system's UKI needs the arm64 stub; the
// host's x86-64 one is refused, and without --stub the error names the
// arm64 stub and its package.
func TestAArch64UKIStub(t *testing.T) {
	f := loadAArch64(t)
	x64 := ukitest.Stub(t)
	out := filepath.Join(t.TempDir(), "nixos.efi")
	base := []string{"--quiet", "uki", "-o", out, "--toplevel", f.Toplevel, "--closure", f.ClosureDir}
	code, _, errOut := runApp(t, append(base, "--stub", x64)...)
	if code == exitOK || !strings.Contains(errOut, "aarch64-linux") {
		t.Errorf("the x86-64 stub for the aarch64 system: exit %d, %q; want an error naming aarch64-linux", code, errOut)
	}
	if _, err := os.Stat("/usr/lib/systemd/boot/efi/linuxaa64.efi.stub"); os.IsNotExist(err) {
		code, _, errOut = runApp(t, base...)
		if code == exitOK || !strings.Contains(errOut, "linuxaa64.efi.stub") || !strings.Contains(errOut, "systemd-boot-efi") {
			t.Errorf("no arm64 stub on the host: exit %d, %q; want an error naming linuxaa64.efi.stub and systemd-boot-efi", code, errOut)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused build left %s (%v)", out, err)
	}
}

// TestAArch64UKIBoots builds the aarch64 fixture's UKI over Debian's
// arm64 systemd-stub, checks its sections with the aarch64 binutils
// (objdump -h lists ukify's layout; objcopy extracts .linux, .cmdline,
// .uname and .osrel as they should be), and boots it over UEFI PXE under
// AAVMF (qemu-system-aarch64 -M virt, TCG): the firmware loads the UKI
// over TFTP, the stub starts the arm64 kernel with its .initrd, and the
// fixture's stage 2 checks every store file's sha256.
func TestAArch64UKIBoots(t *testing.T) {
	skipShort(t)
	f := testutil.LoadFixtureAArch64(t)
	stub := testutil.AArch64Stub(t, f)
	bu := ukitest.BinutilsAA64
	dir := t.TempDir()
	efi := filepath.Join(dir, "nixos.efi")
	buildUKI(t, f, efi, "--stub", stub)

	secs := bu.Sections(t, efi)
	var names []string
	for _, s := range secs[len(secs)-5:] {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != ".osrel .cmdline .uname .initrd .linux" {
		t.Errorf("last sections %q, want ukify's .osrel .cmdline .uname .initrd .linux", got)
	}
	kernel, err := os.ReadFile(f.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bu.Section(t, efi, ".linux"), kernel) {
		t.Error(".linux is not the system's Image")
	}
	if got, want := string(bu.Section(t, efi, ".cmdline")), "init="+f.Init+" "+f.KernelParams; got != want {
		t.Errorf(".cmdline %q, want %q", got, want)
	}
	release, err := os.ReadDir(filepath.Join(f.Toplevel, "kernel-modules", "lib", "modules"))
	if err != nil {
		t.Fatal(err)
	}
	if len(release) != 1 {
		t.Fatalf("the fixture's kernel-modules hold %d releases", len(release))
	}
	if got := string(bu.Section(t, efi, ".uname")); got != release[0].Name() || !strings.Contains(got, "arm64") {
		t.Errorf(".uname %q, want the kernel-modules release %q", got, release[0].Name())
	}
	osrel := string(bu.Section(t, efi, ".osrel"))
	if !strings.Contains(osrel, "ID=nixos\n") || !strings.Contains(osrel, "PRETTY_NAME=") {
		t.Errorf(".osrel does not name NixOS:\n%s", osrel)
	}

	qemu.RequireAAVMF(t)
	c, err := qemu.AArch64UEFI(qemu.Config{
		TFTPDir:     dir,
		BootFile:    "nixos.efi",
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
		Timeout:     15 * time.Minute,
	}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	res := qemu.BootT(t, c)
	t.Logf("AAVMF PXE to the marker: %v", res.Elapsed.Round(time.Second))
	if !strings.Contains(res.Line, "check=sha256") {
		t.Errorf("the marker %q does not follow a full store check", res.Line)
	}
	if !bytes.Contains(res.Console, []byte("EFI stub: Booting Linux Kernel")) {
		t.Errorf("the console does not show the kernel's EFI stub:\n%s", qemu.Tail(res.Console, 60))
	}
}
