package qemu

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nbimg/nbimg/internal/testutil"
)

// LAN is a test network that exists only inside network namespaces the
// test creates: a bridge in namespace LANNS with an ordinary DHCP server
// (Debian's dnsmasq, addresses only, no PXE options) at DHCPIP, tap
// devices for QEMU guests on the bridge, and a second namespace ServerNS,
// joined to the bridge by a veth pair (ServerIf, address ServerIP), for
// the server under test. Nothing is sent outside these namespaces.
type LAN struct {
	LANNS, ServerNS string
	ServerIf        string
	ServerIP        net.IP
	DHCPIP          net.IP
	// DnsmasqLog is dnsmasq's log file.
	DnsmasqLog string
	dir        string
	taps       int
	clients    int
}

var lanSeq atomic.Int32

// NewLAN creates the namespaces, the bridge and the DHCP server, and
// removes them when the test ends. It needs root, ip (iproute2) and
// dnsmasq; without them it skips (or fails when tools are required).
func NewLAN(t testing.TB) *LAN {
	t.Helper()
	return newLAN(t, true)
}

// NewLANWithoutDHCP is NewLAN without dnsmasq: the server under test is
// the LAN's only DHCP server (DHCPIP is still the bridge's address).
func NewLANWithoutDHCP(t testing.TB) *LAN {
	t.Helper()
	return newLAN(t, false)
}

func newLAN(t testing.TB, withDHCP bool) *LAN {
	t.Helper()
	ip := testutil.Tool(t, "ip", "iproute2")
	dnsmasq := ""
	if withDHCP {
		dnsmasq = testutil.Tool(t, "dnsmasq", "dnsmasq")
	}
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "network namespaces need root")
	}
	n := lanSeq.Add(1)
	l := &LAN{
		LANNS:    fmt.Sprintf("nbimg-%d-%d-lan", os.Getpid(), n),
		ServerNS: fmt.Sprintf("nbimg-%d-%d-srv", os.Getpid(), n),
		ServerIf: "eth0",
		ServerIP: net.IPv4(10, 77, 0, 3).To4(),
		DHCPIP:   net.IPv4(10, 77, 0, 2).To4(),
		dir:      t.TempDir(),
	}
	run := func(args ...string) {
		t.Helper()
		if b, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	run("netns", "add", l.LANNS)
	t.Cleanup(func() { exec.Command(ip, "netns", "delete", l.LANNS).Run() }) //nolint:errcheck // best effort
	run("netns", "add", l.ServerNS)
	t.Cleanup(func() { exec.Command(ip, "netns", "delete", l.ServerNS).Run() }) //nolint:errcheck // best effort
	run("-n", l.LANNS, "link", "set", "lo", "up")
	run("-n", l.ServerNS, "link", "set", "lo", "up")
	run("-n", l.LANNS, "link", "add", "br0", "type", "bridge")
	run("-n", l.LANNS, "addr", "add", l.DHCPIP.String()+"/24", "dev", "br0")
	run("-n", l.LANNS, "link", "set", "br0", "up")
	run("-n", l.LANNS, "link", "add", "vsrv", "type", "veth", "peer", "name", l.ServerIf, "netns", l.ServerNS)
	run("-n", l.LANNS, "link", "set", "vsrv", "master", "br0", "up")
	run("-n", l.ServerNS, "addr", "add", l.ServerIP.String()+"/24", "dev", l.ServerIf)
	run("-n", l.ServerNS, "link", "set", l.ServerIf, "up")
	if !withDHCP {
		return l
	}

	l.DnsmasqLog = filepath.Join(l.dir, "dnsmasq.log")
	cmd := exec.Command(ip, "netns", "exec", l.LANNS, dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null",
		"--port=0", "--interface=br0", "--bind-interfaces", "--user=root",
		"--dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,1h",
		"--dhcp-leasefile="+filepath.Join(l.dir, "leases"), "--pid-file="+filepath.Join(l.dir, "dnsmasq.pid"),
		"--log-dhcp", "--log-facility="+l.DnsmasqLog)
	cmd.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() //nolint:errcheck // it may have exited
		cmd.Wait()         //nolint:errcheck // killed
	})
	return l
}

// Tap adds a tap device on the bridge for a guest and returns QEMU's
// arguments for a NIC of the given model on it with the given MAC.
func (l *LAN) Tap(t testing.TB, model, mac string) []string {
	t.Helper()
	l.taps++
	name := fmt.Sprintf("tap%d", l.taps)
	for _, args := range [][]string{
		{"-n", l.LANNS, "tuntap", "add", "dev", name, "mode", "tap"},
		{"-n", l.LANNS, "link", "set", name, "master", "br0", "up"},
	} {
		if b, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	id := "n" + name
	return []string{"-netdev", "tap,id=" + id + ",ifname=" + name + ",script=no,downscript=no",
		"-device", model + ",netdev=" + id + ",mac=" + mac}
}

// Client adds a namespace joined to the bridge by a veth pair whose end
// in it, named eth0, has the given MAC address and is up without an
// address, for a DHCP client program run with `ip netns exec NS`. It
// returns the namespace's name; it is removed when the test ends.
func (l *LAN) Client(t testing.TB, mac string) string {
	t.Helper()
	l.clients++
	ns := fmt.Sprintf("%s-c%d", strings.TrimSuffix(l.LANNS, "-lan"), l.clients)
	peer := fmt.Sprintf("vc%d", l.clients)
	for i, args := range [][]string{
		{"netns", "add", ns},
		{"-n", l.LANNS, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"-n", l.LANNS, "link", "set", peer, "master", "br0", "up"},
		{"-n", ns, "link", "set", "eth0", "address", mac},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "set", "eth0", "up"},
	} {
		if b, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		if i == 0 {
			t.Cleanup(func() { exec.Command("ip", "netns", "delete", ns).Run() }) //nolint:errcheck // best effort
		}
	}
	return ns
}

// Binary returns a QEMU binary for Config.Binary that runs inside the
// LAN's namespace (where the tap devices are).
func (l *LAN) Binary(t testing.TB, qemu string) string {
	t.Helper()
	p := filepath.Join(l.dir, "qemu-in-"+l.LANNS)
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", l.LANNS, qemu)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// InServer runs f on a thread inside the server namespace: sockets it
// opens stay in that namespace (a test's in-process server listens there).
func (l *LAN) InServer(f func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + l.ServerNS)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", l.ServerNS, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it ends with its goroutine.
		return fmt.Errorf("setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// Leases returns dnsmasq's lease file (one line per address handed out).
func (l *LAN) Leases() (string, error) {
	b, err := os.ReadFile(filepath.Join(l.dir, "leases"))
	return string(b), err
}
