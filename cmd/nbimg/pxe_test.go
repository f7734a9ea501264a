package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/netboot"
)

// buildPXE runs `nbimg pxe` into a new directory.
func buildPXE(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pxe")
	args = append([]string{"--quiet", "pxe", "-o", dir, "--comp", "zstd -Xcompression-level 3"}, args...)
	code, _, errOut := runApp(t, args...)
	if code != exitOK {
		t.Fatalf("nbimg %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return dir
}

// requireSyslinux skips unless Debian's syslinux files are installed.
func requireSyslinux(t *testing.T) {
	t.Helper()
	if _, err := netboot.FindSyslinux(""); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
}

// TestPXEOutputs builds a tree of two systems, the second made in the
// test, and checks the files, the menus against the fixture and the
// manifest, and dnsmasq.conf with dnsmasq itself.
func TestPXEOutputs(t *testing.T) {
	f := testutil.LoadFixture(t)
	requireSyslinux(t)
	root := copyFixtureStore(t, f)
	top2 := secondGeneration(t, f, root)
	dir := buildPXE(t, "--store-root", root, "--toplevel", f.Toplevel, "--toplevel", top2,
		"--serial-console", "ttyS0,115200", "--loglevel", "7", "--cmdline", "fixture.check=none",
		"--proxy-net", "10.0.2.0/24", "--proxy-net", "192.168.7.0")
	m := readManifest(t, dir)
	if m.Command != "pxe" || len(m.Entries) != 2 || m.Inputs.Toplevel != f.Toplevel {
		t.Fatalf("manifest: command %q, %d entries, toplevel %s", m.Command, len(m.Entries), m.Inputs.Toplevel)
	}
	base1, base2 := filepath.Base(f.Toplevel), filepath.Base(top2)
	var names []string
	for _, o := range m.Outputs {
		names = append(names, o.Name)
		if _, sum := digest(t, filepath.Join(dir, o.Name)); sum != o.SHA256 {
			t.Errorf("manifest sha256 of %s is %s, file has %s", o.Name, o.SHA256, sum)
		}
	}
	want := []string{"boot.ipxe", "dnsmasq.conf",
		"tftp/" + base2 + "/bzImage", "tftp/" + base2 + "/initrd",
		"tftp/" + base1 + "/bzImage", "tftp/" + base1 + "/initrd",
		"tftp/ldlinux.c32", "tftp/libutil.c32", "tftp/menu.c32", "tftp/pxelinux.0", "tftp/pxelinux.cfg/default"}
	sort.Strings(want) // the manifest sorts by name; where the fixture's directory goes depends on its hash
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("outputs\n%v\nwant\n%v", names, want)
	}
	for _, n := range netboot.SyslinuxFiles {
		a := testutil.ReadFile(t, netboot.DebianSyslinux[n].Path)
		if b := testutil.ReadFile(t, filepath.Join(dir, "tftp", n)); !bytes.Equal(a, b) {
			t.Errorf("tftp/%s differs from %s", n, netboot.DebianSyslinux[n].Path)
		}
	}
	kernel := testutil.ReadFile(t, f.Kernel)
	base := testutil.ReadFile(t, f.Initrd)
	for _, b := range []string{base1, base2} {
		if got := testutil.ReadFile(t, filepath.Join(dir, "tftp", b, "bzImage")); !bytes.Equal(got, kernel) {
			t.Errorf("%s/bzImage is not the fixture's kernel", b)
		}
		if got := testutil.ReadFile(t, filepath.Join(dir, "tftp", b, "initrd")); !bytes.HasPrefix(got, base) || len(got) < len(base)+1<<20 {
			t.Errorf("%s/initrd is not the fixture's initrd with a store image appended", b)
		}
	}

	cfg := testutil.ReadFile(t, filepath.Join(dir, "tftp", "pxelinux.cfg", "default"))
	cmdline := func(top string) string {
		return "init=" + top + "/init " + f.KernelParams + " console=ttyS0,115200 loglevel=7 fixture.check=none"
	}
	for _, w := range []string{
		"SERIAL 0 115200\n", "DEFAULT nixos-1\n", "TIMEOUT 50\n",
		"LABEL nixos-1\n  MENU LABEL fixture 1.0 (" + base1[:8] + ")\n  MENU DEFAULT\n  LINUX " + base1 + "/bzImage\n  INITRD " + base1 + "/initrd\n  APPEND " + cmdline(f.Toplevel) + "\n",
		"LABEL nixos-2\n  MENU LABEL fixture 2.0 (22222222)\n  LINUX " + base2 + "/bzImage\n  INITRD " + base2 + "/initrd\n  APPEND " + cmdline(top2) + "\n",
	} {
		if !strings.Contains(string(cfg), w) {
			t.Errorf("pxelinux.cfg/default lacks %q:\n%s", w, cfg)
		}
	}
	if m.Entries[1].Cmdline != cmdline(top2) || m.Entries[1].Dir != "tftp/"+base2 || m.Entries[1].Toplevel != top2 {
		t.Errorf("manifest entry 2: %+v", m.Entries[1])
	}
	ipxe := testutil.ReadFile(t, filepath.Join(dir, "boot.ipxe"))
	if !strings.Contains(string(ipxe), "kernel --name bzImage tftp/"+base2+"/bzImage init="+top2+"/init initrd=initrd ") {
		t.Errorf("boot.ipxe has no entry for %s:\n%s", top2, ipxe)
	}

	conf := testutil.ReadFile(t, filepath.Join(dir, "dnsmasq.conf"))
	for _, w := range []string{"tftp-root=" + filepath.Join(dir, "tftp") + "\n", "dhcp-range=10.0.2.0,proxy,255.255.255.0\n",
		"dhcp-range=192.168.7.0,proxy\n", "enable-tftp\n", "log-dhcp\n", "dhcp-no-override\n", "pxe-service=x86PC,"} {
		if !strings.Contains(string(conf), w) {
			t.Errorf("dnsmasq.conf lacks %q:\n%s", w, conf)
		}
	}
	check.Dnsmasq(t, filepath.Join(dir, "dnsmasq.conf"))
}

// TestPXESharedClosure gives one closureInfo for two systems: each entry's
// image must hold its own closure only.
func TestPXESharedClosure(t *testing.T) {
	f := testutil.LoadFixture(t)
	requireSyslinux(t)
	root := copyFixtureStore(t, f)
	top2 := secondGeneration(t, f, root)
	// The fixture's registration plus top2, which refers to what the
	// fixture's toplevel refers to.
	reg, err := os.ReadFile(filepath.Join(f.ClosureDir, "registration"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(reg), "\n")
	var entry []string
	for i := 0; i < len(lines); i++ {
		if lines[i] == f.Toplevel {
			var n int
			for j := 0; j < 4; j++ {
				entry = append(entry, lines[i+j])
			}
			entry[0] = top2
			n, err = strconv.Atoi(lines[i+4])
			if err != nil {
				t.Fatal(err)
			}
			entry = append(entry, lines[i+4])
			for _, r := range lines[i+5 : i+5+n] {
				if r == f.Toplevel {
					r = top2
				}
				entry = append(entry, r)
			}
			break
		}
	}
	if len(entry) == 0 {
		t.Fatal("the fixture's registration does not list its toplevel")
	}
	both := filepath.Join(t.TempDir(), "registration")
	if err := os.WriteFile(both, append(reg, []byte(strings.Join(entry, "\n")+"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := buildPXE(t, "--store-root", root, "--closure", both, "--toplevel", top2, "--toplevel", f.Toplevel)
	m := readManifest(t, dir)
	n := len(f.StorePaths(t))
	if len(m.Entries) != 2 || m.Entries[0].Toplevel != top2 || m.Entries[0].StorePaths != n || m.Entries[1].StorePaths != n {
		t.Errorf("entries %+v: want %s first, %d store paths each", m.Entries, top2, n)
	}
}

func TestPXEErrors(t *testing.T) {
	f := testutil.LoadFixture(t)
	empty := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no syslinux", []string{"--toplevel", f.Toplevel, "--closure", f.ClosureDir, "--syslinux", empty}, exitFailure, filepath.Join(empty, "pxelinux.0")},
		{"same system twice", []string{"--toplevel", f.Toplevel, "--toplevel", f.Toplevel, "--closure", f.ClosureDir}, exitFailure, "twice"},
		{"bad loglevel", []string{"--toplevel", f.Toplevel, "--loglevel", "9"}, exitUsage, "--loglevel"},
		{"bad serial", []string{"--toplevel", f.Toplevel, "--serial-console", "ttyUSB0"}, exitUsage, "ttyUSB0"},
		{"bad proxy net", []string{"--toplevel", f.Toplevel, "--proxy-net", "lan"}, exitUsage, "lan"},
		{"closures", []string{"--toplevel", f.Toplevel, "--toplevel", f.Toplevel, "--toplevel", f.Toplevel, "--closure", "a", "--closure", "b"}, exitUsage, "2 --closure for 3 --toplevel"},
		{"no toplevel", []string{"--closure", f.ClosureDir}, exitUsage, "missing --toplevel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			code, _, errOut := runApp(t, append([]string{"pxe", "-o", filepath.Join(parent, "pxe")}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", code, tc.code, errOut, tc.want)
			}
			if left, err := os.ReadDir(parent); err != nil || len(left) != 0 {
				t.Errorf("left behind: %v (%v)", left, err)
			}
		})
	}
}

// pxeBootConfig boots dir's tftp/ through QEMU's iPXE ROM into pxelinux.0.
func pxeBootConfig(f *testutil.Fixture, dir string) qemu.Config {
	return qemu.Config{
		TFTPDir:     filepath.Join(dir, "tftp"),
		BootFile:    netboot.PXELinuxName,
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
	}
}

// TestPXEBootsDefault boots the tree over QEMU's TFTP: pxelinux.0 shows the
// menu and boots the first entry by itself.
func TestPXEBootsDefault(t *testing.T) {
	skipShort(t)
	f := testutil.LoadFixture(t)
	qemu.RequireNetboot(t)
	requireSyslinux(t)
	// This boot checks every store file's sha256; the other PXE boots,
	// whose initrds are built the same way, skip the check.
	dir := buildPXE(t, "--toplevel", f.Toplevel, "--closure", f.ClosureDir,
		"--serial-console", "ttyS0,115200", "--menu-timeout", "1")
	res := qemu.BootT(t, pxeBootConfig(f, dir))
	if !strings.Contains(res.Line, "check=sha256") {
		t.Errorf("the marker %q does not follow a full store check", res.Line)
	}
	// Through the serial console pxelinux draws the menu with escape
	// sequences (and the firmware doubles what it also shows on screen):
	// look for pieces that come out whole.
	for _, w := range []string{"PXELINUX", "NixOS network boot", "Automatic boot in",
		"Loading " + filepath.Base(f.Toplevel) + "/bzImage"} {
		if !strings.Contains(string(res.Console), w) {
			t.Errorf("the console does not show %q: pxelinux's menu did not run", w)
		}
	}
	requireTopLine(t, res.Console, f.Toplevel)
}

// keySender watches the console and, once the pxelinux menu is drawn,
// presses Down and Enter on the guest's keyboard through QEMU's monitor.
type keySender struct {
	t       *testing.T
	monitor string // unix socket
	trigger string
	keys    []string

	mu   sync.Mutex
	seen bytes.Buffer
	sent bool
}

func (k *keySender) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.sent {
		return len(p), nil
	}
	k.seen.Write(p)
	if bytes.Contains(k.seen.Bytes(), []byte(k.trigger)) {
		k.sent = true
		go k.send()
	}
	return len(p), nil
}

func (k *keySender) send() {
	c, err := net.Dial("unix", k.monitor)
	if err != nil {
		k.t.Errorf("QEMU monitor: %v", err)
		return
	}
	defer c.Close()
	time.Sleep(500 * time.Millisecond) // let the menu settle
	for _, key := range k.keys {
		if _, err := c.Write([]byte("sendkey " + key + "\n")); err != nil {
			k.t.Errorf("QEMU monitor: %v", err)
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestPXEBootsSecondEntry picks the second system in pxelinux's menu with
// the keyboard: the system booted must be that one.
func TestPXEBootsSecondEntry(t *testing.T) {
	skipShort(t)
	f := testutil.LoadFixture(t)
	qemu.RequireNetboot(t)
	requireSyslinux(t)
	root := copyFixtureStore(t, f)
	top2 := secondGeneration(t, f, root)
	dir := buildPXE(t, "--store-root", root, "--toplevel", f.Toplevel, "--toplevel", top2,
		"--serial-console", "ttyS0,115200", "--menu-timeout", "30", "--cmdline", "fixture.check=none")
	c := pxeBootConfig(f, dir)
	mon := filepath.Join(t.TempDir(), "monitor.sock")
	c.ExtraArgs = []string{"-monitor", "unix:" + mon + ",server=on,wait=off"}
	c.Console = &keySender{t: t, monitor: mon, trigger: "Press [Tab] to edit options", keys: []string{"down", "ret"}}
	res := qemu.BootT(t, c)
	if !strings.Contains(string(res.Console), "Loading "+filepath.Base(top2)+"/bzImage") {
		t.Errorf("pxelinux did not load the second entry's kernel")
	}
	requireTopLine(t, res.Console, top2)
}

// TestPXEBootsIPXEMenu boots boot.ipxe, whose menu boots the first entry
// after its timeout.
func TestPXEBootsIPXEMenu(t *testing.T) {
	skipShort(t)
	f := testutil.LoadFixture(t)
	qemu.RequireNetboot(t)
	requireSyslinux(t)
	dir := buildPXE(t, "--toplevel", f.Toplevel, "--closure", f.ClosureDir, "--menu-timeout", "1", "--cmdline", "fixture.check=none")
	res := qemu.BootT(t, qemu.Config{
		TFTPDir:     dir,
		BootFile:    netboot.MenuName,
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
	})
	for _, w := range []string{"NixOS network boot", "fixture 1.0 (" + filepath.Base(f.Toplevel)[:8] + ")",
		"tftp/" + filepath.Base(f.Toplevel) + "/bzImage"} {
		if !strings.Contains(string(res.Console), w) {
			t.Errorf("the console does not show %q: the iPXE menu did not run", w)
		}
	}
	requireTopLine(t, res.Console, f.Toplevel)
}

// TestPXEReproducible builds the same tree twice with different thread
// counts: every file has the same bytes (dnsmasq.conf names the output
// directory, so both are built at the same path).
func TestPXEReproducible(t *testing.T) {
	f := testutil.LoadFixture(t)
	requireSyslinux(t)
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	dir := filepath.Join(t.TempDir(), "pxe")
	sums := map[string]string{}
	for i, procs := range []string{"1", "3"} {
		args := []string{"--quiet", "pxe", "-o", dir, "--comp", "zstd -Xcompression-level 3", "--processors", procs,
			"--toplevel", f.Toplevel, "--closure", f.ClosureDir, "--proxy-net", "10.0.2.0/24"}
		if code, _, errOut := runApp(t, args...); code != exitOK {
			t.Fatalf("nbimg %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		m := readManifest(t, dir)
		if len(m.Outputs) != 9 {
			t.Fatalf("%d outputs", len(m.Outputs))
		}
		for _, o := range m.Outputs {
			if i == 0 {
				sums[o.Name] = o.SHA256
			} else if sums[o.Name] != o.SHA256 {
				t.Errorf("%s differs between --processors 1 and 3", o.Name)
			}
		}
		if m.Entries[0].MkfsTime != 1700000000 {
			t.Errorf("mkfs_time %d, want SOURCE_DATE_EPOCH", m.Entries[0].MkfsTime)
		}
	}
}
