package netboot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/testutil"
)

// uefiConfigs are the UEFI configurations the golden files and dnsmasq
// --test check.
var uefiConfigs = []struct {
	name string
	d    Dnsmasq
}{
	{"uefi-ipxe", Dnsmasq{TFTPRoot: "/srv/pxe/tftp", ProxyNets: []string{"192.168.1.0/24"},
		EFIx64: IPXEEFIName, IPXEScript: MenuName}},
	{"uefi-uki-arm64", Dnsmasq{TFTPRoot: "/srv/pxe/tftp", ProxyNets: []string{"192.168.1.0/24"}, MenuText: "NixOS",
		EFIx64: "x/" + UKIName, EFIArm64: "arm64/" + UKIName}},
	{"uefi-http", Dnsmasq{TFTPRoot: "/srv/pxe/tftp", EFIx64: IPXEEFIName, IPXEScript: MenuName,
		EFIArm64: "arm64/nixos.efi", HTTPBase: "http://192.168.1.2:8080/tftp"}},
	{"uefi-arm64-only", Dnsmasq{TFTPRoot: "/srv/pxe/tftp", ProxyNets: []string{"192.168.1.0/24"}, NoBIOS: true,
		EFIArm64: "arm64/" + UKIName}},
}

func TestDnsmasqUEFIGolden(t *testing.T) {
	for _, tc := range uefiConfigs {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.d.Config()
			if err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, "dnsmasq-"+tc.name+".conf", got)
			conf := filepath.Join(t.TempDir(), "dnsmasq.conf")
			if err := os.WriteFile(conf, got, 0o644); err != nil {
				t.Fatal(err)
			}
			check.Dnsmasq(t, conf)
		})
	}
}

// TestDnsmasqUEFIShape checks the lines that select by architecture and
// break iPXE's loop, independently of the golden files.
func TestDnsmasqUEFIShape(t *testing.T) {
	b, err := Dnsmasq{TFTPRoot: "/t", EFIx64: IPXEEFIName, IPXEScript: MenuName, EFIArm64: "a.efi", HTTPBase: "http://h/b/"}.Config()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"pxe-service=x86PC,\"Network boot\",pxelinux",
		"dhcp-userclass=set:ipxe,iPXE",
		"pxe-service=tag:!ipxe,BC_EFI,\"Network boot\",ipxe.efi",
		"pxe-service=tag:!ipxe,x86-64_EFI,\"Network boot\",ipxe.efi",
		"pxe-service=tag:ipxe,BC_EFI,\"Network boot\",boot.ipxe",
		"pxe-service=tag:ipxe,x86-64_EFI,\"Network boot\",boot.ipxe",
		"pxe-service=ARM64_EFI,\"Network boot\",a.efi",
		"dhcp-match=set:efi-http-x64,option:client-arch,16",
		"dhcp-option-force=tag:efi-http-x64,60,HTTPClient",
		"dhcp-boot=tag:efi-http-x64,http://h/b/ipxe.efi",
		"dhcp-match=set:efi-http-arm64,option:client-arch,19",
		"dhcp-boot=tag:efi-http-arm64,http://h/b/a.efi",
	} {
		if !strings.Contains(string(b), "\n"+line+"\n") {
			t.Errorf("no line %q in\n%s", line, b)
		}
	}
	// Without UEFI files, the BIOS configuration is unchanged.
	bios, err := Dnsmasq{TFTPRoot: "/t"}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(bios), "EFI") || strings.Contains(string(bios), "ipxe") {
		t.Errorf("BIOS-only configuration mentions UEFI or iPXE:\n%s", bios)
	}
}

// TestDnsmasqNoBIOS: without BIOS clients the configuration offers
// pxelinux to nobody and still answers arm64 UEFI.
func TestDnsmasqNoBIOS(t *testing.T) {
	b, err := Dnsmasq{TFTPRoot: "/t", NoBIOS: true, EFIArm64: "a/nixos.efi"}.Config()
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	if strings.Contains(conf, "x86PC") || strings.Contains(conf, "pxe-service=BC_EFI") || strings.Contains(conf, "pxe-service=x86-64_EFI") {
		t.Errorf("answers x86 clients:\n%s", conf)
	}
	if !strings.Contains(conf, "\npxe-service=ARM64_EFI,\"Network boot\",a/nixos.efi\n") || !strings.Contains(conf, "boot file a/nixos.efi.") {
		t.Errorf("arm64 UEFI clients are not given a/nixos.efi:\n%s", conf)
	}
	b, err = Dnsmasq{TFTPRoot: "/t", NoBIOS: true, EFIx64: "x/nixos.efi", EFIArm64: "a/nixos.efi"}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "with the boot file x/nixos.efi.\n") {
		t.Errorf("the TFTP-only note does not name one boot file:\n%s", b)
	}
}

func TestDnsmasqUEFIRejects(t *testing.T) {
	for _, d := range []Dnsmasq{
		{TFTPRoot: "/t", EFIx64: "a,b.efi"},
		{TFTPRoot: "/t", EFIx64: "a b.efi"},
		{TFTPRoot: "/t", EFIArm64: "a\nb"},
		{TFTPRoot: "/t", EFIx64: "a.efi", IPXEScript: "x#y"},
		{TFTPRoot: "/t", IPXEScript: MenuName},
		{TFTPRoot: "/t", EFIArm64: "a.efi", IPXEScript: MenuName},
		{TFTPRoot: "/t", HTTPBase: "http://h/"},
		{TFTPRoot: "/t", EFIx64: "a.efi", HTTPBase: "ftp://h/"},
		{TFTPRoot: "/t", EFIx64: "a.efi", HTTPBase: "/relative"},
		{TFTPRoot: "/t", NoBIOS: true},
	} {
		if _, err := d.Config(); !errors.Is(err, ErrBadDnsmasq) {
			t.Errorf("%+v: err = %v, want ErrBadDnsmasq", d, err)
		}
	}
}

func TestFindIPXEEFI(t *testing.T) {
	dir := t.TempDir()
	if _, err := FindIPXEEFI(dir); !errors.Is(err, ErrNoIPXE) || !strings.Contains(err.Error(), "--ipxe") {
		t.Errorf("empty dir: err = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ipxe.efi"), []byte("MZ"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := FindIPXEEFI(dir); err != nil || p != filepath.Join(dir, "ipxe.efi") {
		t.Errorf("FindIPXEEFI = %q, %v", p, err)
	}
	if err := os.Mkdir(filepath.Join(dir, "snponly.efi"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := FindIPXEEFI(dir); !errors.Is(err, ErrNoIPXE) {
		t.Errorf("a directory as snponly.efi: err = %v", err)
	}
	// Debian's package, when installed.
	testutil.File(t, DebianIPXEEFI[0], "ipxe")
	if p, err := FindIPXEEFI(""); err != nil || p != DebianIPXEEFI[0] {
		t.Errorf("FindIPXEEFI(\"\") = %q, %v", p, err)
	}
}

// FuzzDnsmasqUEFI checks that no UEFI field can add a line of its own to
// dnsmasq.conf: a configuration is refused or has as many lines as a
// clean one with the same fields set.
func FuzzDnsmasqUEFI(f *testing.F) {
	f.Add("ipxe.efi", "arm64/nixos.efi", "boot.ipxe", "http://h/tftp")
	f.Add("a.efi\ndhcp-range=x", "", "", "")
	f.Add("", "b", "c", "http://h/")
	f.Add("x", "", "", "http://h/a b")
	f.Fuzz(func(t *testing.T, x64, arm64, script, base string) {
		d := Dnsmasq{TFTPRoot: "/srv/tftp", EFIx64: x64, EFIArm64: arm64, IPXEScript: script, HTTPBase: base}
		b, err := d.Config()
		if err != nil {
			return
		}
		clean := Dnsmasq{TFTPRoot: "/srv/tftp"}
		for _, p := range []struct {
			v   string
			set *string
			to  string
		}{{x64, &clean.EFIx64, "x.efi"}, {arm64, &clean.EFIArm64, "a.efi"}, {script, &clean.IPXEScript, "s.ipxe"}, {base, &clean.HTTPBase, "http://h/"}} {
			if p.v != "" {
				*p.set = p.to
			}
		}
		want, err := clean.Config()
		if err != nil {
			t.Fatalf("clean configuration refused: %v", err)
		}
		if strings.Count(string(b), "\n") != strings.Count(string(want), "\n") {
			t.Errorf("%d lines, a clean one %d:\n%s", strings.Count(string(b), "\n"), strings.Count(string(want), "\n"), b)
		}
	})
}
