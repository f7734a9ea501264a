package main

import (
	"bytes"
	"debug/pe"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/netboot"
)

// PXE trees with aarch64 systems: their kernel is Image, arm64 UEFI
// clients (DHCP option 93 = 11) get an aarch64 system's UKI, and BIOS
// clients and the iPXE menus only ever see x86_64 systems.

// debianX64Stub is Debian's x86-64 UKI stub (systemd-boot-efi).
const debianX64Stub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// peMachine reads an EFI program's machine type with Go's debug/pe.
func peMachine(t *testing.T, name string) uint16 {
	t.Helper()
	f, err := pe.Open(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer f.Close()
	return f.Machine
}

// outputNames lists the manifest's outputs.
func outputNames(m builder.Manifest) []string {
	var names []string
	for _, o := range m.Outputs {
		names = append(names, o.Name)
	}
	return names
}

// TestPXEAArch64Only: a tree of an aarch64 system alone needs --uefi uki,
// and then has no pxelinux files or menus, leaves BIOS clients unanswered
// and gives arm64 UEFI clients the system's arm64 UKI.
func TestPXEAArch64Only(t *testing.T) {
	f := loadAArch64(t)
	stub := testutil.AArch64Stub(t, f)
	parent := t.TempDir()
	code, _, errOut := runApp(t, "pxe", "-o", filepath.Join(parent, "pxe"), "--toplevel", f.Toplevel, "--closure", f.ClosureDir)
	if code != exitFailure || !strings.Contains(errOut, "aarch64 system") || !strings.Contains(errOut, "--uefi uki") {
		t.Errorf("an aarch64 system without --uefi uki: exit %d, %q; want a failure asking for --uefi uki", code, errOut)
	}
	if left, err := os.ReadDir(parent); err != nil || len(left) != 0 {
		t.Errorf("left behind: %v (%v)", left, err)
	}

	dir := buildPXE(t, "--toplevel", f.Toplevel, "--closure", f.ClosureDir, "--uefi", "uki", "--stub", stub,
		"--proxy-net", "192.168.7.0/24")
	m := readManifest(t, dir)
	rel := "tftp/" + filepath.Base(f.Toplevel)
	want := []string{"dnsmasq.conf", rel + "/Image", rel + "/initrd", rel + "/nixos.efi"}
	if got := outputNames(m); !slices.Equal(got, want) {
		t.Errorf("outputs %v, want %v", got, want)
	}
	for _, n := range []string{"boot.ipxe", "tftp/pxelinux.0", "tftp/pxelinux.cfg", "tftp/" + filepath.Base(f.Toplevel) + "/bzImage"} {
		if _, err := os.Stat(filepath.Join(dir, n)); !os.IsNotExist(err) {
			t.Errorf("%s exists (%v): an aarch64-only tree has nothing for BIOS clients or iPXE", n, err)
		}
	}
	if !bytes.Equal(testutil.ReadFile(t, filepath.Join(dir, rel, "Image")), testutil.ReadFile(t, f.Kernel)) {
		t.Errorf("%s/Image is not the fixture's kernel", rel)
	}
	if got := peMachine(t, filepath.Join(dir, rel, "nixos.efi")); got != pe.IMAGE_FILE_MACHINE_ARM64 {
		t.Errorf("%s/nixos.efi is for machine %#x, want arm64", rel, got)
	}
	e := m.Entries[0]
	if len(m.Entries) != 1 || e.Arch != "aarch64" || e.Kernel != rel+"/Image" || e.UKI != rel+"/nixos.efi" || m.Inputs.Arch != "aarch64" {
		t.Errorf("manifest entries %+v, inputs %+v", m.Entries, m.Inputs)
	}
	if len(m.Clients) != 1 || m.Clients[0].Client != "aarch64-efi" || !slices.Equal(m.Clients[0].ClientArch, []int{11}) ||
		m.Clients[0].BootFile != rel+"/nixos.efi" || m.Clients[0].Arch != "aarch64" {
		t.Errorf("manifest clients %+v: want arm64 UEFI only, booting %s/nixos.efi", m.Clients, rel)
	}
	conf := string(testutil.ReadFile(t, filepath.Join(dir, "dnsmasq.conf")))
	if strings.Contains(conf, "pxe-service=x86PC") || strings.Contains(conf, "pxe-service=BC_EFI") || strings.Contains(conf, "pxe-service=x86-64_EFI") {
		t.Errorf("dnsmasq.conf answers x86 clients:\n%s", conf)
	}
	if !strings.Contains(conf, "\npxe-service=ARM64_EFI,\"NixOS network boot\","+filepath.Base(f.Toplevel)+"/nixos.efi\n") {
		t.Errorf("dnsmasq.conf does not give arm64 UEFI clients the UKI:\n%s", conf)
	}
	check.Dnsmasq(t, filepath.Join(dir, "dnsmasq.conf"))
}

// TestPXEAArch64MixedBootsUEFI builds a tree of an x86_64 and an aarch64
// system with --uefi uki and checks that each client architecture gets a
// system of its own: BIOS clients and the menus the x86_64 one, x86-64
// UEFI its UKI, arm64 UEFI the aarch64 one's UKI (arm64 stub). Then it
// boots an arm64 UEFI client as on a LAN, in a network namespace: one
// dnsmasq gives addresses, a second runs the tree's dnsmasq.conf (proxy
// DHCP and TFTP); AAVMF's PXE client (virt machine, Cortex-A57, TCG) asks
// as client architecture 11, loads the aarch64 UKI and the system passes
// the fixture's full content check.
func TestPXEAArch64MixedBootsUEFI(t *testing.T) {
	fa := loadAArch64(t)
	fx := testutil.LoadFixture(t)
	requireSyslinux(t)
	stub := testutil.AArch64Stub(t, fa)
	testutil.File(t, debianX64Stub, "systemd-boot-efi")
	const lan = "10.99.0.0/24" // qemu.Netns's network
	dir := buildPXE(t, "--toplevel", fx.Toplevel, "--closure", fx.ClosureDir, "--toplevel", fa.Toplevel, "--closure", fa.ClosureDir,
		"--uefi", "uki", "--stub", stub, "--proxy-net", lan, "--menu-timeout", "1")
	m := readManifest(t, dir)
	x, a := filepath.Base(fx.Toplevel), filepath.Base(fa.Toplevel)
	rx, ra := "tftp/"+x, "tftp/"+a
	for _, n := range []string{rx + "/bzImage", rx + "/initrd", rx + "/nixos.efi", ra + "/Image", ra + "/initrd", ra + "/nixos.efi",
		"tftp/pxelinux.0", "tftp/pxelinux.cfg/default", "boot.ipxe", "dnsmasq.conf"} {
		if !slices.Contains(outputNames(m), n) {
			t.Errorf("outputs lack %s: %v", n, outputNames(m))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ra, "bzImage")); !os.IsNotExist(err) {
		t.Errorf("the aarch64 system has a bzImage (%v)", err)
	}
	for _, k := range []struct{ file, want string }{{rx + "/bzImage", fx.Kernel}, {ra + "/Image", fa.Kernel}} {
		if !bytes.Equal(testutil.ReadFile(t, filepath.Join(dir, k.file)), testutil.ReadFile(t, k.want)) {
			t.Errorf("%s is not %s", k.file, k.want)
		}
	}
	if got := peMachine(t, filepath.Join(dir, rx, "nixos.efi")); got != pe.IMAGE_FILE_MACHINE_AMD64 {
		t.Errorf("%s/nixos.efi: machine %#x, want x86-64", rx, got)
	}
	if got := peMachine(t, filepath.Join(dir, ra, "nixos.efi")); got != pe.IMAGE_FILE_MACHINE_ARM64 {
		t.Errorf("%s/nixos.efi: machine %#x, want arm64", ra, got)
	}
	for _, n := range []string{"tftp/pxelinux.cfg/default", "boot.ipxe"} {
		text := string(testutil.ReadFile(t, filepath.Join(dir, n)))
		if strings.Contains(text, a) || !strings.Contains(text, x+"/bzImage") {
			t.Errorf("%s offers the aarch64 system or lacks the x86_64 one:\n%s", n, text)
		}
	}
	if len(m.Entries) != 2 || m.Entries[0].Arch != "x86_64" || m.Entries[1].Arch != "aarch64" ||
		m.Entries[0].UKI != rx+"/nixos.efi" || m.Entries[1].UKI != ra+"/nixos.efi" || m.Entries[1].Kernel != ra+"/Image" {
		t.Errorf("manifest entries %+v", m.Entries)
	}
	clients := map[string]builder.ManifestClient{}
	for _, c := range m.Clients {
		clients[c.Client] = c
	}
	for kind, want := range map[string]builder.ManifestClient{
		"bios":        {Client: "bios", ClientArch: []int{0}, Arch: "x86_64", BootFile: "tftp/pxelinux.0"},
		"x86_64-efi":  {Client: "x86_64-efi", ClientArch: []int{7, 9}, Arch: "x86_64", BootFile: rx + "/nixos.efi", Entry: "nixos-1"},
		"aarch64-efi": {Client: "aarch64-efi", ClientArch: []int{11}, Arch: "aarch64", BootFile: ra + "/nixos.efi", Entry: "nixos-aarch64-1"},
	} {
		got := clients[kind]
		if got.Arch != want.Arch || got.BootFile != want.BootFile || got.Entry != want.Entry || !slices.Equal(got.ClientArch, want.ClientArch) {
			t.Errorf("manifest client %s: %+v, want %+v", kind, got, want)
		}
	}
	if len(m.Clients) != 3 {
		t.Errorf("manifest clients %+v: want 3", m.Clients)
	}
	conf := string(testutil.ReadFile(t, filepath.Join(dir, "dnsmasq.conf")))
	for _, w := range []string{
		"\npxe-service=x86PC,\"NixOS network boot\",pxelinux\n",
		"\npxe-service=BC_EFI,\"NixOS network boot\"," + x + "/nixos.efi\n",
		"\npxe-service=x86-64_EFI,\"NixOS network boot\"," + x + "/nixos.efi\n",
		"\npxe-service=ARM64_EFI,\"NixOS network boot\"," + a + "/nixos.efi\n",
	} {
		if !strings.Contains(conf, w) {
			t.Errorf("dnsmasq.conf lacks %q:\n%s", w, conf)
		}
	}
	check.Dnsmasq(t, filepath.Join(dir, "dnsmasq.conf"))
	if testing.Short() {
		return
	}

	// The boot: an arm64 UEFI client on a LAN served by the tree's dnsmasq.
	bin := qemu.RequireAAVMF(t)
	ns := qemu.NetnsT(t)
	if ns.Network() != lan {
		t.Fatalf("the namespace's network is %s, the tree was built for %s", ns.Network(), lan)
	}
	log := ns.StartPXEServers(t, filepath.Join(dir, netboot.DnsmasqName))
	wrapper, err := ns.Wrapper(t.TempDir(), bin)
	if err != nil {
		t.Fatal(err)
	}
	c, err := qemu.AArch64UEFI(qemu.Config{
		Binary:      wrapper,
		NetDev:      ns.NetDev(),
		Marker:      fa.Marker,
		FailMarkers: []string{fa.FailMarker},
		Timeout:     10 * time.Minute,
	}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	res, err := qemu.Boot(t.Context(), c)
	if err != nil {
		t.Fatalf("%v\n--- dnsmasq ---\n%s", err, log.String())
	}
	t.Logf("marker after %.1fs: %s", res.Elapsed.Seconds(), res.Line)
	if !strings.Contains(res.Line, "check=sha256") {
		t.Errorf("the marker %q does not follow a full store check", res.Line)
	}
	requireTopLine(t, res.Console, fa.Toplevel)
	if sent := "sent " + filepath.Join(dir, ra, "nixos.efi"); !strings.Contains(log.String(), sent) {
		t.Errorf("dnsmasq did not log %q:\n%s", sent, log.String())
	}
	if strings.Contains(log.String(), x+"/") {
		t.Errorf("dnsmasq sent the arm64 client a file of the x86_64 system:\n%s", log.String())
	}
}
