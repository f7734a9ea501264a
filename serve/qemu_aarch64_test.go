package serve

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/netboot"
	"github.com/nbimg/nbimg/squashfs"
)

// armNetbootUKI writes the aarch64 fixture's netboot directory with its
// UKI (nbimg netboot --uki with the fixture's arm64 systemd stub):
// Image, initrd, netboot.ipxe, nixos.efi and a manifest.json that says
// aarch64. The store image is zstd level 3 (the level makes no
// difference to what the boot checks, and costs less here).
func armNetbootUKI(t *testing.T, f *testutil.Fixture, dir string) {
	t.Helper()
	ctx := context.Background()
	systems, err := builder.LoadSystems(ctx, []string{f.Toplevel}, []string{f.ClosureDir}, "")
	if err != nil {
		t.Fatal(err)
	}
	img := builder.StoreImageOptions()
	if img.Compressor, err = squashfs.ParseCompressor("zstd -Xcompression-level 3"); err != nil {
		t.Fatal(err)
	}
	_, err = builder.Netboot(ctx, systems[0], dir, builder.BootOptions{
		InitrdOptions: builder.InitrdOptions{Image: builder.SquashfsImage{Options: img}},
		UKI:           &builder.UKIOptions{Stub: testutil.AArch64Stub(t, f)},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBootAArch64UEFI: an arm64 UEFI client (AAVMF on QEMU's virt
// machine, Cortex-A57, TCG; its own PXE client, no option ROM) on the test
// LAN, where dnsmasq hands out addresses without PXE options, asks with
// client architecture 11. nbimg serve serves one root holding two
// artifact directories, a-x86 (an x86-64 UKI) and b-arm (the aarch64
// netboot directory), both with a nixos.efi; the proxy DHCP answer skips
// a-x86's (its manifest.json says x86_64) for b-arm's (aarch64), AAVMF
// loads it over serve's TFTP, and the UKI boots the fixture to its full
// content check.
func TestBootAArch64UEFI(t *testing.T) {
	if testing.Short() {
		t.Skip("QEMU boot: not in -short")
	}
	bin := qemu.RequireAAVMF(t)
	f := testutil.LoadFixtureAArch64(t)
	root := t.TempDir()
	armNetbootUKI(t, f, filepath.Join(root, "b-arm"))
	writeFile(t, filepath.Join(root, "a-x86", "manifest.json"), []byte(`{"inputs": {"arch": "x86_64"}}`))
	copyFile(t, testutil.File(t, "/usr/lib/systemd/boot/efi/linuxx64.efi.stub", "systemd-boot-efi"), filepath.Join(root, "a-x86", netboot.UKIName))
	lan := qemu.NewLAN(t)
	const mac = "52:54:00:4e:42:03"
	_, logs := serveLAN(t, lan, Options{Dirs: []string{root}})

	vars := filepath.Join(t.TempDir(), "AAVMF_VARS.fd")
	copyFile(t, qemu.AAVMFVars, vars)
	nic := lan.Tap(t, "virtio-net-pci", mac)
	nic[len(nic)-1] += ",romfile=" // AAVMF's own PXE (QEMU's ROMs are x86 code)
	args := append([]string{
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + qemu.AAVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars}, nic...)
	res := qemu.BootT(t, qemu.AArch64(qemu.Config{
		Binary:      lan.Binary(t, bin),
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
		Timeout:     12 * time.Minute,
		Memory:      1536,
		ExtraArgs:   args,
	}))
	if !strings.Contains(res.Line, "check=sha256") {
		t.Errorf("the marker %q does not follow a full store check", res.Line)
	}
	log := logs.String()
	for _, want := range []string{"class=efi-arm64 ipxe=false", "boot=b-arm/nixos.efi", "msg=sent proto=tftp", "file=b-arm/nixos.efi"} {
		if !strings.Contains(log, want) {
			t.Errorf("server log lacks %q", want)
		}
	}
	if strings.Contains(log, "a-x86/nixos.efi") {
		t.Errorf("the x86 UKI was offered to the arm64 client:\n%s", log)
	}
}
