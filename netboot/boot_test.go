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

// TestBootUEFIPXE boots a UEFI PXE tree as on a real LAN, in a network
// namespace: one dnsmasq gives addresses (the network's DHCP server),
// another runs the configuration this package writes, proxy DHCP and
// TFTP. OVMF's own PXE client (the NIC's iPXE ROM removed) asks as
// x86-64 UEFI (client architecture 7) and gets iPXE's EFI build; iPXE
// asks again, with user class iPXE, and gets the iPXE menu instead of
// itself, which boots the fixture.
func TestBootUEFIPXE(t *testing.T) {
	if testing.Short() {
		t.Skip("boots OVMF (a minute or more under TCG)")
	}
	f := testutil.LoadFixture(t)
	f.RequireReference(t)
	bin := qemu.Require(t)
	ipxe, err := netboot.FindIPXEEFI("")
	if err != nil {
		testutil.SkipOrFail(t, "%v", err)
		return
	}
	ns := qemu.NetnsT(t)

	dir := t.TempDir()
	tftp := filepath.Join(dir, netboot.TFTPDir)
	menu := netboot.Menu{Title: "UEFI test", Timeout: time.Second, Entries: []netboot.Entry{{
		Title: "fixture", Dir: "fixture", Init: f.Init, KernelParams: f.KernelParams,
		Cmdline: "fixture.check=none fixture.tag=uefi-pxe",
	}}}
	script, err := menu.IPXE("")
	if err != nil {
		t.Fatal(err)
	}
	conf, err := netboot.Dnsmasq{TFTPRoot: tftp, ProxyNets: []string{ns.Network()},
		EFIx64: netboot.IPXEEFIName, IPXEScript: netboot.MenuName}.Config()
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{
		netboot.IPXEEFIName:             ipxe,
		"fixture/" + netboot.KernelName: f.Kernel,
		"fixture/" + netboot.InitrdName: f.RefInitrd,
	} {
		copyFile(t, filepath.Join(tftp, name), src)
	}
	for name, b := range map[string][]byte{filepath.Join(tftp, netboot.MenuName): script, filepath.Join(dir, netboot.DnsmasqName): conf} {
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The LAN's DHCP server, then nbimg's proxy DHCP and TFTP server.
	log := ns.StartPXEServers(t, filepath.Join(dir, netboot.DnsmasqName))

	wrapper, err := ns.Wrapper(t.TempDir(), bin)
	if err != nil {
		t.Fatal(err)
	}
	fw := qemu.RequireOVMF(t, false)
	res, err := qemu.Boot(t.Context(), qemu.Config{
		Binary:      wrapper,
		NetDev:      ns.NetDev(),
		NIC:         "virtio-net-pci,romfile=",
		ExtraArgs:   fw.Args(),
		Memory:      1024,
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
		Timeout:     8 * time.Minute,
	})
	logText := log.String
	if err != nil {
		t.Fatalf("%v\n--- dnsmasq ---\n%s", err, logText())
	}
	t.Logf("qemu: marker after %.1fs: %s", res.Elapsed.Seconds(), res.Line)
	if !strings.Contains(res.Line, "tag=uefi-pxe") {
		t.Errorf("marker line %q does not carry the menu's command line", res.Line)
	}
	for _, want := range []string{"sent " + filepath.Join(tftp, netboot.IPXEEFIName), "sent " + filepath.Join(tftp, netboot.MenuName)} {
		if !strings.Contains(logText(), want) {
			t.Errorf("dnsmasq did not log %q:\n%s", want, logText())
		}
	}
}

func copyFile(t *testing.T, dst, src string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
