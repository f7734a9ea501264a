package netboot

import (
	"strings"
	"testing"
)

// FuzzMenu checks that no field can add a line to the menus: whatever the
// title, directory and parameters, a menu is refused or has the lines of
// a clean one.
func FuzzMenu(f *testing.F) {
	f.Add("NixOS", "fixture 1.0 (abc)", "abc-nixos-system", "console=ttyS0", "quiet")
	f.Add("a\nb", "t", "d", "p", "c")
	f.Add("", "", "../x", "", "")
	f.Add("t", "x", "d", "a\rDEFAULT evil", "")
	f.Fuzz(func(t *testing.T, title, entry, dir, params, cmdline string) {
		m := Menu{Title: title, Entries: []Entry{{Title: entry, Dir: dir, Init: "/nix/store/x/init", KernelParams: params, Cmdline: cmdline}}}
		clean := Menu{Title: "t", Entries: []Entry{{Title: "e", Dir: "d", Init: "/nix/store/x/init", KernelParams: "p", Cmdline: "c"}}}
		if title == "" {
			clean.Title = ""
		}
		if entry == "" {
			clean.Entries[0].Title = ""
		}
		if strings.TrimSpace(params) == "" {
			clean.Entries[0].KernelParams = ""
		}
		if strings.TrimSpace(cmdline) == "" {
			clean.Entries[0].Cmdline = ""
		}
		cfg, err := m.PXELinux()
		if err != nil {
			return
		}
		want, _ := clean.PXELinux()
		if strings.Count(string(cfg), "\n") != strings.Count(string(want), "\n") {
			t.Errorf("pxelinux.cfg has %d lines, a clean one %d:\n%s", strings.Count(string(cfg), "\n"), strings.Count(string(want), "\n"), cfg)
		}
		ipxe, err := m.IPXE("tftp")
		if err != nil {
			t.Fatalf("PXELinux accepts what IPXE refuses: %v", err)
		}
		want, _ = clean.IPXE("tftp")
		if strings.Count(string(ipxe), "\n") != strings.Count(string(want), "\n") {
			t.Errorf("boot.ipxe has %d lines, a clean one %d:\n%s", strings.Count(string(ipxe), "\n"), strings.Count(string(want), "\n"), ipxe)
		}
	})
}

// FuzzDnsmasq checks that a proxy network either is refused or gives one
// dhcp-range line.
func FuzzDnsmasq(f *testing.F) {
	for _, s := range []string{"192.168.1.0/24", "10.0.0.1", "::1", "1.2.3.4/0", "1.2.3.4\ndhcp-range=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, net string) {
		b, err := Dnsmasq{TFTPRoot: "/srv/tftp", ProxyNets: []string{net}}.Config()
		if err != nil {
			return
		}
		if n := strings.Count(string(b), "\ndhcp-range="); n != 1 {
			t.Errorf("%q gives %d dhcp-range lines:\n%s", net, n, b)
		}
	})
}
