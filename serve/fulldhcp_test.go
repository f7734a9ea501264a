package serve

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
)

// udhcpc runs busybox's DHCP client in the client namespace ns until it
// has a lease (-q) or has given up (-n after three DISCOVERs two seconds
// apart), with extra arguments; it returns what its script saw on
// "bound" ("" when it got no lease).
func udhcpc(t *testing.T, busybox, ns string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "lease")
	script := filepath.Join(dir, "script")
	writeFile(t, script, []byte("#!/bin/sh\n[ \"$1\" = bound ] || exit 0\n"+
		"echo \"ip=$ip mask=$subnet serverid=$serverid lease=$lease boot_file=$boot_file\" > "+out+"\n"))
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"netns", "exec", ns, busybox, "udhcpc", "-f", "-q", "-n", "-t", "3", "-T", "2", "-A", "1",
		"-i", "eth0", "-s", script}, extra...)
	b, err := exec.Command("ip", args...).CombinedOutput()
	got, rerr := os.ReadFile(out)
	if err != nil {
		if rerr == nil {
			t.Fatalf("udhcpc failed (%v) after a lease:\n%s", err, b)
		}
		t.Logf("udhcpc %s: no lease (%v):\n%s", ns, err, b)
		return ""
	}
	if rerr != nil {
		t.Fatalf("udhcpc exited 0 without a lease: %v\n%s", rerr, b)
	}
	return strings.TrimSpace(string(got))
}

// TestFullDHCP: with a DHCP range, nbimg serve is the LAN's only DHCP
// server (a namespace LAN without dnsmasq). Real clients (busybox udhcpc in
// namespaces of their own) get addresses from the range, one each, with
// the mask, lease time and server identifier; a PXE client gets its boot
// file with its address; once the range is used up the next client gets
// nothing (never an address outside it); and a restarted server, its
// leases forgotten, gives the first client the same address again.
func TestFullDHCP(t *testing.T) {
	busybox := testutil.Tool(t, "busybox", "busybox-static")
	lan := qemu.NewLANWithoutDHCP(t)
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "undionly.kpxe"), []byte("ipxe"))
	opts := Options{Dirs: []string{root}, DHCPRange: "10.77.0.60,10.77.0.63"}
	_, logs, stop := startLAN(t, lan, opts)
	t.Cleanup(stop)

	var clients []string
	for i := 1; i <= 5; i++ {
		clients = append(clients, lan.Client(t, fmt.Sprintf("52:54:00:4e:43:%02x", i)))
	}
	pxe := []string{"-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"}
	got := map[string]string{}
	var first string
	for i, ns := range clients[:4] {
		var extra []string
		if i == 3 {
			extra = pxe
		}
		line := udhcpc(t, busybox, ns, extra...)
		kv := map[string]string{}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			kv[k] = v
		}
		ip := kv["ip"]
		if i == 0 {
			first = ip
		}
		if a := net.ParseIP(ip).To4(); a == nil || !a.Mask(net.CIDRMask(24, 32)).Equal(net.IPv4(10, 77, 0, 0)) || a[3] < 60 || a[3] > 63 {
			t.Errorf("client %d got %q, outside 10.77.0.60-63", i+1, ip)
		}
		if other, dup := got[ip]; dup {
			t.Errorf("%s given to clients %s and %d", ip, other, i+1)
		}
		got[ip] = fmt.Sprint(i + 1)
		if kv["mask"] != "255.255.255.0" || kv["serverid"] != lan.ServerIP.String() || kv["lease"] != "3600" {
			t.Errorf("client %d: %q: want mask 255.255.255.0, server %s, lease 3600", i+1, line, lan.ServerIP)
		}
		boot := kv["boot_file"]
		if wantBoot := map[bool]string{true: "undionly.kpxe", false: ""}[i == 3]; boot != wantBoot {
			t.Errorf("client %d: boot file %q, want %q", i+1, boot, wantBoot)
		}
	}
	if line := udhcpc(t, busybox, clients[4]); line != "" {
		t.Errorf("a fifth client got a lease from a range of four: %q", line)
	}
	log := logs.String()
	for _, want := range []string{"reply=OFFER", "reply=ACK", "class=bios", "boot=undionly.kpxe"} {
		if !strings.Contains(log, want) {
			t.Errorf("server log lacks %q", want)
		}
	}

	// A restart forgets the leases; the same client asks again and gets
	// the same address (deterministic by its MAC address).
	stop()
	_, _, stop2 := startLAN(t, lan, opts)
	t.Cleanup(stop2)
	if line := udhcpc(t, busybox, clients[0]); !strings.HasPrefix(line, "ip="+first+" ") {
		t.Errorf("after a restart client 1 got %q, before %s", line, first)
	}
}

// TestBootFullDHCP: on a LAN with no other DHCP server, nbimg serve
// --dhcp-range alone boots a BIOS client (SeaBIOS and the iPXE ROM of
// QEMU's e1000): the address and the boot answer come in one OFFER, iPXE
// fetches its script, the kernel and the initrd over HTTP, and the fixture
// reaches its marker (without the content check: TestBootBIOS does that).
func TestBootFullDHCP(t *testing.T) {
	if testing.Short() {
		t.Skip("QEMU boot: not in -short")
	}
	bin := qemu.RequireNetboot(t)
	f := testutil.LoadFixture(t)
	f.RequireReference(t)
	lan := qemu.NewLANWithoutDHCP(t)
	const mac = "52:54:00:4e:42:06"
	machines := filepath.Join(t.TempDir(), "machines.json")
	writeFile(t, machines, []byte(`{"`+mac+`": {"cmdline": "fixture.check=none fixture.tag=fulldhcp"}}`))
	_, logs := serveLAN(t, lan, Options{Dirs: []string{netbootTree(t, f)}, Machines: machines, DHCPRange: "10.77.0.100,10.77.0.109"})
	res := qemu.BootT(t, qemu.Config{
		Binary:      lan.Binary(t, bin),
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
		Timeout:     6 * time.Minute,
		ExtraArgs:   lan.Tap(t, "e1000", mac),
	})
	if !strings.Contains(res.Line, "tag=fulldhcp") {
		t.Errorf("marker %q lacks tag=fulldhcp", res.Line)
	}
	log := logs.String()
	for _, want := range []string{"class=bios ipxe=true", "reply=OFFER addr=10.77.0.10", "reply=ACK addr=10.77.0.10", "path=/_/ipxe/" + mac, "path=/bzImage", "path=/initrd"} {
		if !strings.Contains(log, want) {
			t.Errorf("server log lacks %q", want)
		}
	}
}
