package builder_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/netboot"
	"github.com/nbimg/nbimg/nixstore"
	"github.com/nbimg/nbimg/uki"
	"github.com/nbimg/nbimg/uki/ukitest"
)

// fixtureSystem loads the fixture's closure; its store image is the
// reference squashfs, appended as it is (no image build).
func fixtureSystem(t *testing.T) (*testutil.Fixture, *nixstore.Closure, builder.InitrdOptions) {
	t.Helper()
	f := testutil.LoadFixture(t)
	f.RequireReference(t)
	ukitest.Stub(t)
	systems, err := builder.LoadSystems(context.Background(), []string{f.Toplevel}, []string{f.ClosureDir}, "")
	if err != nil {
		t.Fatal(err)
	}
	return f, systems[0], builder.InitrdOptions{ImageFile: f.RefSquashfs}
}

func signer(t *testing.T) (*uki.Signer, string) {
	t.Helper()
	key, cert := ukitest.Snakeoil(t)
	k, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	s, err := uki.NewSigner(k, c)
	if err != nil {
		t.Fatal(err)
	}
	return s, cert
}

// TestUKIPipeline writes a UKI of the fixture twice (same bytes), checks
// its command line and that its .initrd is what InitrdFile writes.
func TestUKIPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds UKIs of the fixture (tens of seconds)")
	}
	f, c, iopts := fixtureSystem(t)
	dir := t.TempDir()
	o := builder.BootOptions{InitrdOptions: iopts, Cmdline: "quiet"}
	var sums []string
	for _, name := range []string{"a.efi", "b.efi"} {
		res, err := builder.UKI(context.Background(), c, filepath.Join(dir, name), o, builder.UKIOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Layout.Signed || res.Stub != ukitest.StubX64 {
			t.Errorf("signed=%v stub %s", res.Layout.Signed, res.Stub)
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, string(b))
	}
	if sums[0] != sums[1] {
		t.Error("two UKIs of the same input differ")
	}
	efi := filepath.Join(dir, "a.efi")
	if got, want := string(ukitest.DumpSection(t, efi, ".cmdline")), "init="+f.Init+" "+f.KernelParams+" quiet"; got != want {
		t.Errorf(".cmdline %q, want %q", got, want)
	}
	ref := filepath.Join(dir, "initrd")
	if _, err := builder.InitrdFile(context.Background(), ref, c, builder.InitrdOptions{ImageFile: f.RefSquashfs, Bases: []string{f.Initrd}}); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ukitest.DumpSection(t, efi, ".initrd"), want) {
		t.Error(".initrd is not the initrd InitrdFile writes")
	}
	osrel := string(ukitest.DumpSection(t, efi, ".osrel"))
	if !strings.Contains(osrel, "ID=nixos\n") {
		t.Errorf(".osrel %q", osrel)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 3 {
		t.Errorf("temporary files left: %v", ents)
	}
}

// TestPXEUEFI writes PXE trees for UEFI clients: iPXE's EFI build with
// the menu beside it, and signed UKIs.
func TestPXEUEFI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds UKIs of the fixture (tens of seconds)")
	}
	_, c, iopts := fixtureSystem(t)
	ipxe := testutil.File(t, netboot.DebianIPXEEFI[0], "ipxe")
	s, cert := signer(t)
	entry := filepath.Base(c.Toplevel.Path)

	t.Run("ipxe", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "pxe")
		_, err := builder.PXE(context.Background(), []*nixstore.Closure{c}, dir, builder.PXEOptions{
			InitrdOptions: iopts, UEFI: builder.UEFIIPXE, ProxyNets: []string{"192.168.1.0/24"},
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "tftp", netboot.IPXEEFIName))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(ipxe)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("tftp/ipxe.efi is not %s", ipxe)
		}
		menu, err := os.ReadFile(filepath.Join(dir, "tftp", netboot.MenuName))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(menu), "kernel --name bzImage "+entry+"/bzImage ") {
			t.Errorf("tftp/boot.ipxe does not name its files beside it:\n%s", menu)
		}
		conf := filepath.Join(dir, netboot.DnsmasqName)
		check.Dnsmasq(t, conf)
		text, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range []string{"pxe-service=tag:!ipxe,x86-64_EFI,", "pxe-service=tag:ipxe,BC_EFI,"} {
			if !strings.Contains(string(text), line) {
				t.Errorf("dnsmasq.conf lacks %q", line)
			}
		}
	})
	t.Run("uki", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "pxe")
		_, err := builder.PXE(context.Background(), []*nixstore.Closure{c}, dir, builder.PXEOptions{
			InitrdOptions: iopts, UEFI: builder.UEFIUKI, UKI: builder.UKIOptions{Signer: s},
			HTTPBase: "http://192.168.1.2/tftp",
		})
		if err != nil {
			t.Fatal(err)
		}
		efi := filepath.Join(dir, "tftp", entry, netboot.UKIName)
		if out, ok := ukitest.Sbverify(t, cert, efi); !ok {
			t.Errorf("sbverify refuses %s:\n%s", efi, out)
		}
		initrd, err := os.ReadFile(filepath.Join(dir, "tftp", entry, netboot.InitrdName))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ukitest.DumpSection(t, efi, ".initrd"), initrd) {
			t.Error("the UKI's .initrd is not the entry's initrd")
		}
		conf := filepath.Join(dir, netboot.DnsmasqName)
		check.Dnsmasq(t, conf)
		text, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range []string{"pxe-service=x86-64_EFI,\"NixOS network boot\"," + entry + "/nixos.efi",
			"dhcp-boot=tag:efi-http-x64,http://192.168.1.2/tftp/" + entry + "/nixos.efi"} {
			if !strings.Contains(string(text), line+"\n") {
				t.Errorf("dnsmasq.conf lacks %q:\n%s", line, text)
			}
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, o := range []builder.PXEOptions{
			{UEFI: "bios"},
			{HTTPBase: "http://h/"},
			{UEFI: builder.UEFIIPXE, IPXEDir: t.TempDir()},
			{UEFI: builder.UEFIUKI, UKI: builder.UKIOptions{Stub: ipxe + ".missing"}},
		} {
			o.InitrdOptions = iopts
			dir := filepath.Join(t.TempDir(), "pxe")
			if _, err := builder.PXE(context.Background(), []*nixstore.Closure{c}, dir, o); err == nil {
				t.Errorf("%+v: no error", o)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("%+v: output written despite the error", o)
			}
		}
	})
}

// TestStubByArch: the stub follows the toplevel's detected architecture
// (here without a `system` file, as when it came from the kernel's
// header): an aarch64 system wants linuxaa64.efi.stub and refuses the
// x86-64 one.
func TestStubByArch(t *testing.T) {
	x64 := ukitest.Stub(t)
	top := &nixstore.Toplevel{Path: "/nix/store/00000000000000000000000000000000-nixos-system-a", Arch: nixstore.ArchAArch64}
	c := &nixstore.Closure{Toplevel: top, StoreRoot: t.TempDir()}
	p, err := builder.FindStub(c, "")
	if err == nil && !strings.HasSuffix(p, "/linuxaa64.efi.stub") {
		t.Errorf("FindStub for aarch64: %s", p)
	}
	if err != nil && !strings.Contains(err.Error(), "linuxaa64.efi.stub") {
		t.Errorf("FindStub for aarch64: %v; want the arm64 stub named", err)
	}
	if _, err := builder.ValidStub(c, x64); err == nil || !strings.Contains(err.Error(), "aarch64-linux") {
		t.Errorf("the x86-64 stub for an aarch64 system: %v; want it refused naming aarch64-linux", err)
	}
	top.Arch = nixstore.ArchX86_64
	top.System = "aarch64-linux" // Arch decides, as ReadToplevel sets it
	if _, err := builder.ValidStub(c, x64); err != nil {
		t.Errorf("the x86-64 stub for an x86_64 system: %v", err)
	}
}
