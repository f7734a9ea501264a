package netboot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/testutil"
)

const toplevel2 = "/nix/store/0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-nbimg-24.11"

func testMenu() Menu {
	return Menu{
		Title:   "NixOS network boot",
		Timeout: 5 * time.Second,
		Serial:  &Serial{Port: 0, Baud: 115200},
		Entries: []Entry{
			{Title: "nbimg 24.11 (9r8gpyv4)", Dir: "9r8gpyv4b4yz8lqld2s3z3xh6s3kq0yc-nixos-system-nbimg-24.11",
				Init: InitPath(toplevel), KernelParams: "loglevel=4", Cmdline: "console=ttyS0,115200"},
			{Title: "nbimg 24.11 (0a1b2c3d)", Dir: "0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-nbimg-24.11",
				Init: InitPath(toplevel2), KernelParams: " loglevel=4\t quiet", Cmdline: "console=ttyS0,115200 boot.shell_on_fail"},
		},
	}
}

func TestMenuGolden(t *testing.T) {
	two := testMenu()
	one := Menu{Timeout: 1500 * time.Millisecond, Entries: two.Entries[:1]}
	for _, tc := range []struct {
		name string
		m    Menu
	}{{"two", two}, {"one", one}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.m.PXELinux()
			if err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, "pxelinux-"+tc.name+".cfg", cfg)
			ipxe, err := tc.m.IPXE(TFTPDir)
			if err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, "menu-"+tc.name+".ipxe", ipxe)
		})
	}
}

// TestMenuShape checks what the golden files must say, independently of
// them.
func TestMenuShape(t *testing.T) {
	m := testMenu()
	cfg, err := m.PXELinux()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"SERIAL 0 115200\n", "UI menu.c32\n", "TIMEOUT 50\n", "DEFAULT nixos-1\n", "ONTIMEOUT nixos-1\n",
		"LABEL nixos-1\n  MENU LABEL nbimg 24.11 (9r8gpyv4)\n  MENU DEFAULT\n",
		"  LINUX 9r8gpyv4b4yz8lqld2s3z3xh6s3kq0yc-nixos-system-nbimg-24.11/bzImage\n",
		"  APPEND init=" + toplevel + "/init loglevel=4 console=ttyS0,115200\n",
		"  APPEND init=" + toplevel2 + "/init loglevel=4 quiet console=ttyS0,115200 boot.shell_on_fail\n",
	} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("pxelinux.cfg lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(string(cfg), "initrd=") || strings.Count(string(cfg), "MENU DEFAULT") != 1 {
		t.Errorf("pxelinux.cfg: initrd= in APPEND (pxelinux adds it) or not one MENU DEFAULT:\n%s", cfg)
	}
	ipxe, err := m.IPXE("tftp/")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"#!ipxe\n", "item nixos-2 nbimg 24.11 (0a1b2c3d)\n",
		"choose --default nixos-1 --timeout 5000 entry || goto nixos-1\n",
		"kernel --name bzImage tftp/0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-nbimg-24.11/bzImage init=" + toplevel2 + "/init initrd=initrd loglevel=4 quiet console=ttyS0,115200 boot.shell_on_fail ${cmdline}\n",
		"initrd --name initrd tftp/0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-nbimg-24.11/initrd\n",
	} {
		if !strings.Contains(string(ipxe), want) {
			t.Errorf("boot.ipxe lacks %q:\n%s", want, ipxe)
		}
	}
	if got := m.CommandLine(1); got != "init="+toplevel2+"/init loglevel=4 quiet console=ttyS0,115200 boot.shell_on_fail" {
		t.Errorf("CommandLine(1) = %q", got)
	}
}

func TestMenuRejects(t *testing.T) {
	good := testMenu().Entries[0]
	for name, m := range map[string]Menu{
		"no entries":    {},
		"title newline": {Title: "a\nb", Entries: []Entry{good}},
		"no init":       {Entries: []Entry{{Dir: "a"}}},
		"absolute dir":  {Entries: []Entry{{Dir: "/a", Init: "/x/init"}}},
		"dotdot dir":    {Entries: []Entry{{Dir: "../a", Init: "/x/init"}}},
		"blank in dir":  {Entries: []Entry{{Dir: "a b", Init: "/x/init"}}},
		"same dir":      {Entries: []Entry{good, good}},
		"entry title":   {Entries: []Entry{{Dir: "a", Init: "/x/init", Title: "x\ry"}}},
		"params":        {Entries: []Entry{{Dir: "a", Init: "/x/init", KernelParams: "a\nDEFAULT evil"}}},
	} {
		if _, err := m.PXELinux(); !errors.Is(err, ErrBadMenu) {
			t.Errorf("%s: PXELinux err = %v, want ErrBadMenu", name, err)
		}
		if _, err := m.IPXE("tftp"); !errors.Is(err, ErrBadMenu) {
			t.Errorf("%s: IPXE err = %v, want ErrBadMenu", name, err)
		}
	}
}

func TestParseSerial(t *testing.T) {
	for in, want := range map[string]Serial{
		"ttyS0,115200": {0, 115200}, "ttyS1": {1, 115200}, "ttyS3,9600n8": {3, 9600}, "ttyS0,57600": {0, 57600},
	} {
		got, err := ParseSerial(in)
		if err != nil || got != want {
			t.Errorf("ParseSerial(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	if p := (Serial{1, 9600}).KernelParam(); p != "console=ttyS1,9600" {
		t.Errorf("KernelParam = %q", p)
	}
	for _, in := range []string{"", "ttyS", "ttyS4", "ttyS01", "ttyAMA0,115200", "tty0", "ttyS0,fast", "ttyS0,230400", "ttyS0,"} {
		if _, err := ParseSerial(in); err == nil || !strings.Contains(err.Error(), in) {
			t.Errorf("ParseSerial(%q): err = %v, want one naming the input", in, err)
		}
	}
}

func TestFindSyslinuxDir(t *testing.T) {
	dir := t.TempDir()
	for _, n := range SyslinuxFiles[:3] {
		testutil.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte(n), 0o644))
	}
	_, err := FindSyslinux(dir)
	if !errors.Is(err, ErrNoSyslinux) || !strings.Contains(err.Error(), filepath.Join(dir, "libutil.c32")) {
		t.Fatalf("missing libutil.c32: %v", err)
	}
	testutil.NoError(t, os.WriteFile(filepath.Join(dir, "libutil.c32"), nil, 0o644))
	got, err := FindSyslinux(dir)
	if err != nil || len(got) != 4 || got["menu.c32"] != filepath.Join(dir, "menu.c32") {
		t.Fatalf("FindSyslinux(%s) = %v, %v", dir, got, err)
	}
}

// TestFindSyslinuxDebian finds Debian's files, or names the packages.
func TestFindSyslinuxDebian(t *testing.T) {
	got, err := FindSyslinux("")
	if err != nil {
		if !errors.Is(err, ErrNoSyslinux) || !strings.Contains(err.Error(), "install the Debian package") {
			t.Fatalf("error without the packages: %v", err)
		}
		testutil.SkipOrFail(t, "%v", err)
	}
	for _, n := range SyslinuxFiles {
		if got[n] != DebianSyslinux[n].Path {
			t.Errorf("%s at %q, want %s", n, got[n], DebianSyslinux[n].Path)
		}
	}
	// The error for a missing file names its package.
	saved := DebianSyslinux["menu.c32"]
	DebianSyslinux["menu.c32"] = struct{ Path, Package string }{"/nonexistent/menu.c32", "syslinux-common"}
	defer func() { DebianSyslinux["menu.c32"] = saved }()
	_, err = FindSyslinux("")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/menu.c32") || !strings.Contains(err.Error(), "package syslinux-common") {
		t.Errorf("missing menu.c32: %v", err)
	}
}

func TestDnsmasqGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    Dnsmasq
	}{
		{"proxy", Dnsmasq{TFTPRoot: "/srv/pxe/tftp", ProxyNets: []string{"192.168.1.0/24", "10.0.2.77/8", "172.16.0.0"}}},
		{"tftp-only", Dnsmasq{TFTPRoot: "/srv/pxe/tftp", MenuText: "NixOS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.d.Config()
			if err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, "dnsmasq-"+tc.name+".conf", got)
		})
	}
}

// TestDnsmasqAccepts runs dnsmasq --test on the configurations.
func TestDnsmasqAccepts(t *testing.T) {
	for _, d := range []Dnsmasq{
		{TFTPRoot: "/srv/pxe/tftp", ProxyNets: []string{"192.168.1.0/24", "10.0.2.77/8", "172.16.0.0"}},
		{TFTPRoot: "/srv/my pxe/tftp", MenuText: "NixOS, menu"},
	} {
		text, err := d.Config()
		if err != nil {
			t.Fatal(err)
		}
		conf := filepath.Join(t.TempDir(), "dnsmasq.conf")
		if err := os.WriteFile(conf, text, 0o644); err != nil {
			t.Fatal(err)
		}
		check.Dnsmasq(t, conf)
	}
	check.DnsmasqRejects(t, "dhcp-range=nonsense,proxy,x\n")
}

func TestParseProxyNet(t *testing.T) {
	for in, want := range map[string]string{
		"192.168.1.0":    "192.168.1.0,proxy",
		"192.168.1.0/24": "192.168.1.0,proxy,255.255.255.0",
		"10.1.2.3/8":     "10.0.0.0,proxy,255.0.0.0",
		"172.16.0.0/12":  "172.16.0.0,proxy,255.240.0.0",
	} {
		if got, err := ParseProxyNet(in); err != nil || got != want {
			t.Errorf("ParseProxyNet(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fd00::/8", "::1", "192.168.1", "eth0", "192.168.1.0/33"} {
		if _, err := ParseProxyNet(in); !errors.Is(err, ErrBadDnsmasq) {
			t.Errorf("ParseProxyNet(%q): err = %v", in, err)
		}
	}
	for _, d := range []Dnsmasq{{TFTPRoot: "tftp"}, {TFTPRoot: "/a\nb"}, {TFTPRoot: "/a", MenuText: "x\ny"}, {TFTPRoot: "/a", ProxyNets: []string{"x"}}} {
		if _, err := d.Config(); !errors.Is(err, ErrBadDnsmasq) {
			t.Errorf("%+v: err = %v", d, err)
		}
	}
}

// TestDnsmasqOddTFTPRoots starts dnsmasq on configurations whose TFTP root
// holds the characters dnsmasq splits on, comments at or strips, and checks
// that it serves exactly that directory.
func TestDnsmasqOddTFTPRoots(t *testing.T) {
	base := t.TempDir()
	for _, name := range []string{"a,b", "a #b", `a\b`, `a"b`, "a\tb", "trailing ", " leading", "a'b", "caf\xe9", "plain"} {
		dir := filepath.Join(base, name, "tftp")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		text, err := Dnsmasq{TFTPRoot: dir, MenuText: "a, #b \"c\""}.Config()
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		conf := filepath.Join(t.TempDir(), "dnsmasq.conf")
		if err := os.WriteFile(conf, text, 0o644); err != nil {
			t.Fatal(err)
		}
		check.Dnsmasq(t, conf)
		got, log := testutil.DnsmasqTFTPRoot(t, conf)
		if !strings.HasPrefix(got, dir+" ") && got != dir {
			t.Errorf("%q: dnsmasq serves %q, want %q\n%s\n%s", name, got, dir, text, log)
		}
	}
	// Negative control: the same root written bare is read wrongly.
	dir := filepath.Join(base, "a,b", "tftp")
	conf := filepath.Join(t.TempDir(), "bare.conf")
	if err := os.WriteFile(conf, []byte("port=0\nenable-tftp\ntftp-root="+dir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := testutil.DnsmasqTFTPRoot(t, conf); strings.HasPrefix(got, dir) {
		t.Errorf("a bare root with a comma is served as %q: the check proves nothing", got)
	}
}
