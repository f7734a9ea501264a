package uki_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/uki"
	"github.com/nbimg/nbimg/uki/ukitest"
)

// fixtureUKI returns the contents of a UKI of the fixture system booting
// its reference initrd (stage 1 + mksquashfs store image), with extra
// appended to the command line.
func fixtureUKI(t *testing.T, f *testutil.Fixture, extra string) map[string][]byte {
	t.Helper()
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	linux := read(f.Kernel)
	c := map[string][]byte{
		uki.SectionOSRel:   []byte("NAME=NixOS\nID=nixos\nPRETTY_NAME=\"nbimg fixture\"\n"),
		uki.SectionCmdline: []byte(strings.TrimSpace(f.Cmdline() + " " + extra)),
		uki.SectionInitrd:  read(f.RefInitrd),
		uki.SectionLinux:   linux,
	}
	if v := uki.KernelVersion(bytes.NewReader(linux)); v != "" {
		c[uki.SectionUname] = []byte(v)
	}
	return c
}

// TestBootSecureBoot boots the fixture from an ESP under OVMF with Secure
// Boot enforced by Debian's snakeoil keys: the UKI signed with the
// snakeoil key boots to the fixture's marker (its store checks without
// reading every file: the direct boots check the same reference image,
// and objcopy shows .initrd holds it byte for byte), and the same UKI
// unsigned is refused by the firmware.
func TestBootSecureBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots OVMF twice (minutes under TCG)")
	}
	f := testutil.LoadFixture(t)
	f.RequireReference(t)
	qemu.Require(t)
	stub := ukitest.Stub(t)
	key, cert := ukitest.Snakeoil(t)
	c := fixtureUKI(t, f, "fixture.check=none")
	signed, _ := writeUKI(t, stub, c, loadSigner(t, key, cert))
	unsigned, _ := writeUKI(t, stub, c, nil)
	if out, ok := ukitest.Sbverify(t, cert, signed); !ok {
		t.Fatalf("sbverify refuses the UKI before the boot:\n%s", out)
	}

	t.Run("signed", func(t *testing.T) {
		fw := qemu.RequireOVMF(t, true)
		res := qemu.BootT(t, qemu.Config{
			Disk:        qemu.ESPT(t, signed),
			ExtraArgs:   fw.Args(),
			Memory:      1024,
			Marker:      f.Marker,
			FailMarkers: []string{f.FailMarker, "Access Denied"},
			Timeout:     8 * time.Minute,
		})
		if !bytes.Contains(res.Console, []byte("EFI stub: UEFI Secure Boot is enabled")) {
			t.Errorf("the kernel does not report Secure Boot enabled:\n%s", qemu.Tail(res.Console, 80))
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		fw := qemu.RequireOVMF(t, true)
		qemu.BootT(t, qemu.Config{
			Disk:        qemu.ESPT(t, unsigned),
			ExtraArgs:   fw.Args(),
			Marker:      "Access Denied",
			FailMarkers: []string{"EFI stub", "Linux version", f.Marker},
			Timeout:     5 * time.Minute,
		})
	})
}

// TestBootTFTP boots the unsigned UKI over the network from OVMF's own
// PXE client (the NIC's iPXE ROM removed with romfile=): UEFI loads the
// whole image over TFTP and starts it.
func TestBootTFTP(t *testing.T) {
	if testing.Short() {
		t.Skip("boots OVMF (a minute or more under TCG)")
	}
	f := testutil.LoadFixture(t)
	f.RequireReference(t)
	qemu.Require(t)
	stub := ukitest.Stub(t)
	out, _ := writeUKI(t, stub, fixtureUKI(t, f, "fixture.check=none fixture.tag=uefi-tftp"), nil)
	dir := t.TempDir()
	if err := os.Rename(out, dir+"/nixos.efi"); err != nil {
		t.Fatal(err)
	}
	fw := qemu.RequireOVMF(t, false)
	res := qemu.BootT(t, qemu.Config{
		TFTPDir:     dir,
		BootFile:    "nixos.efi",
		NIC:         "virtio-net-pci,romfile=",
		ExtraArgs:   fw.Args(),
		Memory:      1024,
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
		Timeout:     8 * time.Minute,
	})
	if !strings.Contains(res.Line, "tag=uefi-tftp") {
		t.Errorf("marker line %q does not carry the UKI's command line tag", res.Line)
	}
	if !bytes.Contains(res.Console, []byte("PXE")) {
		t.Errorf("no PXE boot on the console:\n%s", qemu.Tail(res.Console, 80))
	}
}
