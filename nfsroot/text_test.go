package nfsroot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/testutil"
)

const toplevel = "/nix/store/9r8gpyv4b4yz8lqld2s3z3xh6s3kq0yc-nixos-system-pi-24.11"

func TestConfigGolden(t *testing.T) {
	for _, m := range Models() {
		t.Run(string(m), func(t *testing.T) {
			got, err := Config{Model: m, UART: true}.Text()
			if err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, "config-"+string(m)+".txt", got)
		})
	}
	got, err := Config{Model: Pi4}.Text()
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "config-pi4-no-uart.txt", got)
}

// TestConfigShape checks the settings the firmware documentation asks
// for, independently of the golden files.
func TestConfigShape(t *testing.T) {
	for m, kernel := range map[Model]string{Pi3: "kernel8.img", Pi4: "kernel8.img", Pi5: "kernel_2712.img"} {
		b, err := Config{Model: m, UART: true}.Text()
		if err != nil {
			t.Fatal(err)
		}
		settings := map[string]bool{}
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" && !strings.HasPrefix(l, "#") {
				settings[l] = true
			}
		}
		for _, want := range []string{"arm_64bit=1", "kernel=" + kernel, "initramfs initrd followkernel", "enable_uart=1"} {
			if !settings[want] {
				t.Errorf("%s: config.txt lacks %q:\n%s", m, want, b)
			}
		}
		if len(settings) != 4 {
			t.Errorf("%s: config.txt has other settings:\n%s", m, b)
		}
		if m.KernelName() != kernel {
			t.Errorf("%s: KernelName %q, want %q", m, m.KernelName(), kernel)
		}
	}
	if _, err := (Config{Model: "pi2"}).Text(); !errors.Is(err, ErrBadModel) {
		t.Errorf("pi2: err = %v", err)
	}
}

func TestCmdlineGolden(t *testing.T) {
	root := NFSRoot{Host: "192.168.1.2", Path: "/srv/nfs/nixos-net-image-24.11-aarch64-linux"}
	for _, tc := range []struct {
		name string
		c    Cmdline
	}{
		{"plain", Cmdline{Root: root, Init: toplevel + "/init"}},
		{"params", Cmdline{Root: root, Init: toplevel + "/init", KernelParams: "console=ttyS1,115200 loglevel=7"}},
		{"options-extra", Cmdline{Root: root, Options: ",proto=tcp,nolock,", Init: toplevel + "/init",
			KernelParams: " console=tty1\t", Extra: "boot.shell_on_fail"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.c.Text()
			if err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, "cmdline-"+tc.name+".txt", got)
		})
	}
}

// TestCmdlineShape checks the line the issue fixes, independently of the
// golden files.
func TestCmdlineShape(t *testing.T) {
	c := Cmdline{Root: NFSRoot{Host: "10.0.0.1", Path: "/x"}, Options: "proto=tcp", Init: toplevel + "/init", KernelParams: "console=ttyS0", Extra: "quiet"}
	b, err := c.Text()
	if err != nil {
		t.Fatal(err)
	}
	want := "root=/dev/nfs nfsroot=10.0.0.1:/x,vers=3,proto=tcp rw ip=dhcp rootwait init=" + toplevel + "/init console=ttyS0 quiet\n"
	if string(b) != want {
		t.Errorf("got  %q\nwant %q", b, want)
	}
	for _, bad := range []Cmdline{
		{Init: toplevel + "/init"},
		{Root: NFSRoot{Host: "h", Path: "/x"}},
		{Root: NFSRoot{Host: "h", Path: "/x"}, Init: "/a b"},
		{Root: NFSRoot{Host: "h", Path: "/x"}, Init: "/i", KernelParams: "a\nb"},
		{Root: NFSRoot{Host: "h", Path: "/x"}, Init: "/i", Options: "vers=4.1"},
		{Root: NFSRoot{Host: "h", Path: "/x"}, Init: "/i", Options: "proto=tcp nolock"},
		{Root: NFSRoot{Host: "h", Path: "/x"}, Init: "/i", Options: "nolock,nfsvers=4"},
		{Root: NFSRoot{Host: "h", Path: "/x"}, Init: "/i", Options: "v4.1"},
		{Root: NFSRoot{Host: "h", Path: "relative"}, Init: "/i"},
	} {
		if _, err := bad.Text(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestParseNFSRoot(t *testing.T) {
	for in, want := range map[string]NFSRoot{
		"192.168.1.2:/srv/nfs/pi": {"192.168.1.2", "/srv/nfs/pi"},
		"nas:/export/pi/":         {"nas", "/export/pi"},
		"nas.lan:/a//b/../c":      {"nas.lan", "/a/c"},
	} {
		got, err := ParseNFSRoot(in)
		if err != nil || got != want {
			t.Errorf("ParseNFSRoot(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "/srv/nfs", ":/srv", "nas:relative", "nas:/a b", "nas:/a,b", "fd00::1:/srv"} {
		if _, err := ParseNFSRoot(in); !errors.Is(err, ErrBadNFS) {
			t.Errorf("ParseNFSRoot(%q): err = %v", in, err)
		}
	}
}

func TestParseSerial(t *testing.T) {
	for in, want := range map[string]string{"1a2b3c4d": "1a2b3c4d", "DEADBEEF": "deadbeef", "00000000": "00000000"} {
		if got, err := ParseSerial(in); err != nil || got != want {
			t.Errorf("ParseSerial(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "1a2b3c4", "1a2b3c4d5", "1000000012345678", "1a2b3c4g", "../../x"} {
		if _, err := ParseSerial(in); !errors.Is(err, ErrBadSerial) {
			t.Errorf("ParseSerial(%q): err = %v", in, err)
		}
	}
}

func TestDefaultName(t *testing.T) {
	got, err := DefaultName("24.11.20241231.abcdef0\n", "aarch64-linux")
	if err != nil || got != "nixos-net-image-24.11.20241231.abcdef0-aarch64-linux" {
		t.Errorf("DefaultName = %q, %v", got, err)
	}
	for _, v := range [][2]string{{"", "aarch64-linux"}, {"24.11", ""}, {"24/11", "x"}} {
		if _, err := DefaultName(v[0], v[1]); err == nil {
			t.Errorf("DefaultName(%q, %q): no error", v[0], v[1])
		}
	}
	for _, n := range []string{"", ".", "..", "a/b", "a b", "a,b", "a:b"} {
		if CheckName(n) == nil {
			t.Errorf("CheckName(%q): no error", n)
		}
	}
}

func TestExportsGolden(t *testing.T) {
	got, err := Exports{Path: "/srv/nfs/nixos-net-image-24.11-aarch64-linux"}.Text()
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "exports", got)
	got, err = Exports{Path: "/srv/nfs/pi", Clients: "192.168.1.0/24"}.Text()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(got), "\n/srv/nfs/pi 192.168.1.0/24(rw,sync,no_subtree_check,no_root_squash)\n") {
		t.Errorf("exports with clients:\n%s", got)
	}
	for _, e := range []Exports{{Path: "srv"}, {Path: "/a b"}, {Path: "/a", Clients: "x(rw)"}} {
		if _, err := e.Text(); !errors.Is(err, ErrBadText) {
			t.Errorf("%+v: err = %v", e, err)
		}
	}
}

func TestDnsmasqGolden(t *testing.T) {
	for name, d := range map[string]Dnsmasq{
		"proxy":     {TFTPRoot: "/srv/pi/boot", ProxyRanges: []string{"192.168.1.0,proxy,255.255.255.0", "10.0.0.0,proxy"}},
		"tftp-only": {TFTPRoot: "/srv/pi/boot"},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := d.Text()
			if err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, "dnsmasq-"+name+".conf", got)
		})
	}
	for _, d := range []Dnsmasq{{TFTPRoot: "boot"}, {TFTPRoot: "/a\nb"}, {TFTPRoot: "/a", ProxyRanges: []string{"192.168.1.0"}}} {
		if _, err := d.Text(); !errors.Is(err, ErrBadText) {
			t.Errorf("%+v: err = %v", d, err)
		}
	}
}

// TestDnsmasqAccepts runs dnsmasq --test on the configurations, and checks
// that it refuses a broken one (so that its approval means something).
func TestDnsmasqAccepts(t *testing.T) {
	for _, d := range []Dnsmasq{
		{TFTPRoot: "/srv/pi/boot", ProxyRanges: []string{"192.168.1.0,proxy,255.255.255.0", "10.0.0.0,proxy"}},
		{TFTPRoot: "/srv/my pi/boot"},
	} {
		text, err := d.Text()
		if err != nil {
			t.Fatal(err)
		}
		conf := filepath.Join(t.TempDir(), "dnsmasq.conf")
		if err := os.WriteFile(conf, text, 0o644); err != nil {
			t.Fatal(err)
		}
		check.Dnsmasq(t, conf)
	}
	check.DnsmasqRejects(t, "pxe-service=0,\"Raspberry Pi Boot\n")
}
