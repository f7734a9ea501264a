package netboot_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/netboot"
)

// TestBootIPXEEFI boots netboot.ipxe as this package writes it through
// iPXE's EFI build: OVMF with a virtio NIC, whose option ROM is iPXE's
// (Debian's ipxe-qemu efi-virtio.rom), loads the script over QEMU's TFTP,
// and the script the kernel and the fixture's reference initrd.
func TestBootIPXEEFI(t *testing.T) {
	if testing.Short() {
		t.Skip("boots OVMF (a minute or more under TCG)")
	}
	f := testutil.LoadFixture(t)
	f.RequireReference(t)
	qemu.Require(t)
	testutil.File(t, "/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu")
	script, err := netboot.IPXE{Init: f.Init, KernelParams: f.KernelParams, Cmdline: "fixture.check=none fixture.tag=ipxe-efi"}.Script()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, target := range map[string]string{netboot.KernelName: f.Kernel, netboot.InitrdName: f.RefInitrd} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, netboot.ScriptName), script, 0o644); err != nil {
		t.Fatal(err)
	}
	fw := qemu.RequireOVMF(t, false)
	res := qemu.BootT(t, qemu.Config{
		TFTPDir:     dir,
		BootFile:    netboot.ScriptName,
		NIC:         "virtio-net-pci",
		ExtraArgs:   fw.Args(),
		Memory:      1024,
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
		Timeout:     8 * time.Minute,
	})
	if !strings.Contains(res.Line, "tag=ipxe-efi") {
		t.Errorf("marker line %q does not carry the script's command line", res.Line)
	}
	if !strings.Contains(string(res.Console), "iPXE") || !strings.Contains(string(res.Console), "EFI stub") {
		t.Errorf("not booted by iPXE through the kernel's EFI stub:\n%s", qemu.Tail(res.Console, 80))
	}
}
