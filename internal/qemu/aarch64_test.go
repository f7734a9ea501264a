package qemu

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

func TestAArch64Args(t *testing.T) {
	t.Setenv(AccelEnv, "")
	c := AArch64(Config{Kernel: "Image", Initrd: "initrd", Cmdline: "console=ttyAMA0"})
	if c.Binary != AArch64Binary {
		t.Errorf("Binary = %q", c.Binary)
	}
	args, err := c.Args()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(args, " ")
	for _, want := range []string{"-machine accel=tcg", "-cpu cortex-a57", "-m 1024",
		"-kernel Image", "-initrd initrd", "-append console=ttyAMA0", "-machine virt"} {
		if !strings.Contains(got, want) {
			t.Errorf("args %q lack %q", got, want)
		}
	}
	// What the caller sets wins.
	c = AArch64(Config{Kernel: "Image", CPU: "max", Memory: 2048, ExtraArgs: []string{"-smp", "2"}})
	args, err = c.Args()
	if err != nil {
		t.Fatal(err)
	}
	got = strings.Join(args, " ")
	if !strings.Contains(got, "-cpu max") || !strings.Contains(got, "-m 2048") || !strings.HasSuffix(got, "-machine virt -smp 2") {
		t.Errorf("args %q: want -cpu max, -m 2048 and the caller's extra arguments last", got)
	}
}

func TestAArch64UEFIArgs(t *testing.T) {
	if _, err := os.Stat(AAVMFVars); err != nil {
		testutil.SkipOrFail(t, "%s not found: install the Debian package qemu-efi-aarch64", AAVMFVars)
	}
	dir := t.TempDir()
	if _, err := AArch64UEFI(Config{Kernel: "Image"}, dir); err == nil {
		t.Error("AArch64UEFI without TFTPDir: want an error")
	}
	c, err := AArch64UEFI(Config{TFTPDir: "/srv/tftp", BootFile: "nixos.efi"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	args, err := c.Args()
	if err != nil {
		t.Fatal(err)
	}
	vars := filepath.Join(dir, "AAVMF_VARS.fd")
	for _, want := range []string{
		"if=pflash,format=raw,unit=0,readonly=on,file=" + AAVMFCode,
		"if=pflash,format=raw,unit=1,file=" + vars,
		"user,id=n0,tftp=/srv/tftp,bootfile=nixos.efi",
		"virtio-net-pci,romfile=,netdev=n0",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	got, err := os.ReadFile(vars)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile(AAVMFVars)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, tmpl) {
		t.Errorf("%s is not a copy of %s", vars, AAVMFVars)
	}
}

func aarch64FixtureForBoot(t *testing.T) *testutil.Fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("boots qemu-system-aarch64 (TCG)")
	}
	return testutil.LoadFixtureAArch64(t)
}

// TestBootAArch64FixtureNoStore boots the aarch64 fixture's Image with its
// stage-1 initrd alone on the virt machine: the arm64 kernel, console and
// busybox work when stage 1 says the store image is missing.
func TestBootAArch64FixtureNoStore(t *testing.T) {
	f := aarch64FixtureForBoot(t)
	RequireAArch64(t)
	c := AArch64(fixtureConfig(f))
	c.Kernel, c.Initrd, c.Cmdline = f.Kernel, f.Initrd, f.Cmdline()
	_, err := Boot(t.Context(), c)
	var be *BootError
	if !errors.As(err, &be) || !errors.Is(err, ErrFailMarker) || !strings.Contains(be.Line, "nix-store.squashfs") {
		t.Fatalf("booting without a store image: %v; want stage 1's failure about nix-store.squashfs", err)
	}
	if !strings.Contains(string(be.Console), "aarch64") && !strings.Contains(string(be.Console), "cloud-arm64") {
		t.Errorf("the console does not show an arm64 kernel")
	}
	t.Logf("failed as expected after %.1fs: %s", be.Elapsed.Seconds(), be.Line)
}

// TestBootAArch64UEFIPXE network-boots the fixture's Image, an EFI program
// through its EFI stub, with AAVMF's own PXE client from QEMU's TFTP
// server. Without an initrd the kernel cannot go far: the boot passes
// when the EFI stub has started the kernel.
func TestBootAArch64UEFIPXE(t *testing.T) {
	f := aarch64FixtureForBoot(t)
	RequireAAVMF(t)
	c := fixtureConfig(f)
	c.Marker = "EFI stub: Booting Linux Kernel"
	c.TFTPDir = tftpTree(t, map[string]string{"Image.efi": f.Kernel}, nil)
	c.BootFile = "Image.efi"
	c, err := AArch64UEFI(c, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	BootT(t, c)
}
