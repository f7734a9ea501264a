package serve

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/netboot"
)

// lanNetwork opens the server's sockets inside the test LAN's server
// namespace, bound to its interface.
type lanNetwork struct{ lan *qemu.LAN }

func (n lanNetwork) Listen(ctx context.Context, network, addr string) (l net.Listener, err error) {
	err = n.lan.InServer(func() error {
		l, err = HostNetwork{Interface: n.lan.ServerIf}.Listen(ctx, network, addr)
		return err
	})
	return l, err
}

func (n lanNetwork) ListenPacket(ctx context.Context, network, addr string) (c net.PacketConn, err error) {
	err = n.lan.InServer(func() error {
		c, err = HostNetwork{Interface: n.lan.ServerIf}.ListenPacket(ctx, network, addr)
		return err
	})
	return c, err
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// netbootTree lays out the fixture as nbimg netboot does: bzImage, initrd
// (stage 1 with the store image appended) and netboot.ipxe.
func netbootTree(t testing.TB, f *testutil.Fixture) string {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, f.Kernel, filepath.Join(dir, netboot.KernelName))
	copyFile(t, f.RefInitrd, filepath.Join(dir, netboot.InitrdName))
	script, err := netboot.IPXE{Init: f.Init, KernelParams: f.KernelParams}.Script()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, netboot.ScriptName), script)
	copyFile(t, f.RefSquashfs, filepath.Join(dir, StoreImage)) // for NBD clients
	return dir
}

// serveLAN runs a Server with every service, proxy DHCP included, in the
// LAN's server namespace, until the test ends.
func serveLAN(t *testing.T, lan *qemu.LAN, opts Options) (*Server, *syncBuffer) {
	t.Helper()
	s, logs, stop := startLAN(t, lan, opts)
	t.Cleanup(stop)
	return s, logs
}

// startLAN is serveLAN with a stop function (which waits for Run and
// logs the server's log when the test has failed).
func startLAN(t *testing.T, lan *qemu.LAN, opts Options) (*Server, *syncBuffer, func()) {
	t.Helper()
	logs := &syncBuffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	opts.HTTPAddr, opts.TFTPAddr, opts.NBDAddr = ":80", ":69", ":10809"
	opts.DHCPAddr, opts.PXEAddr = ":67", ":4011"
	opts.Advertise = lan.ServerIP
	opts.Net = lanNetwork{lan}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Started():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			if t.Failed() {
				t.Logf("server log:\n%s", logs)
			}
		})
	}
	return s, logs, stop
}

// TestBootBIOS: a BIOS client (SeaBIOS and the iPXE ROM of QEMU's e1000)
// on a bridge where dnsmasq hands out addresses without any PXE option
// boots the fixture's netboot tree, with its full content check, from
// nbimg serve alone (proxy DHCP, then the iPXE script, kernel and initrd
// over HTTP). The machine map's command line reaches the kernel: the
// marker carries its tag.
func TestBootBIOS(t *testing.T) {
	if testing.Short() {
		t.Skip("QEMU boot: not in -short")
	}
	bin := qemu.RequireNetboot(t)
	f := testutil.LoadFixture(t)
	f.RequireReference(t)
	lan := qemu.NewLAN(t)
	const mac = "52:54:00:4e:42:01"
	machines := filepath.Join(t.TempDir(), "machines.json")
	writeFile(t, machines, []byte(`{"`+mac+`": {"cmdline": "fixture.tag=served"}}`))
	_, logs := serveLAN(t, lan, Options{Dirs: []string{netbootTree(t, f)}, Machines: machines})

	res := qemu.BootT(t, qemu.Config{
		Binary:      lan.Binary(t, bin),
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
		Timeout:     6 * time.Minute,
		ExtraArgs:   lan.Tap(t, "e1000", mac),
	})
	if !strings.Contains(res.Line, "tag=served") {
		t.Errorf("marker %q lacks tag=served: the machine map's command line did not reach the kernel", res.Line)
	}
	log := logs.String()
	for _, want := range []string{"class=bios ipxe=true", "path=/_/ipxe/" + mac, "path=/netboot.ipxe", "path=/bzImage", "path=/initrd"} {
		if !strings.Contains(log, want) {
			t.Errorf("server log lacks %q", want)
		}
	}
	// An NBD client on the LAN (qemu-img) reads the store image, the
	// default export, byte for byte.
	qimg := testutil.Tool(t, "qemu-img", "qemu-utils")
	out := filepath.Join(t.TempDir(), "store.img")
	cmd := exec.Command("ip", "netns", "exec", lan.LANNS, qimg, "convert", "-f", "raw", "-O", "raw",
		"nbd://"+lan.ServerIP.String()+":10809", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-img over NBD: %v\n%s", err, b)
	}
	if b, err := exec.Command("cmp", out, f.RefSquashfs).CombinedOutput(); err != nil {
		t.Errorf("the store image read over NBD differs: %v\n%s", err, b)
	}
	leases, err := lan.Leases()
	if err != nil || !strings.Contains(leases, mac) {
		t.Errorf("dnsmasq leased no address to %s (%v): %q", mac, err, leases)
	}
}

// TestBootUEFI: an x86-64 UEFI client (OVMF's own PXE, no iPXE ROM) gets
// iPXE's EFI build (snponly.efi) over TFTP from the proxy answer, iPXE then gets the
// script over HTTP and boots the fixture (without the content check: the
// BIOS test does that; this one is about the UEFI path).
func TestBootUEFI(t *testing.T) {
	if testing.Short() {
		t.Skip("QEMU boot: not in -short")
	}
	bin := qemu.Require(t)
	code := testutil.File(t, "/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf")
	vars := testutil.File(t, "/usr/share/OVMF/OVMF_VARS_4M.fd", "ovmf")
	ipxeDir := filepath.Dir(testutil.File(t, "/usr/lib/ipxe/ipxe.efi", "ipxe"))
	f := testutil.LoadFixture(t)
	f.RequireReference(t)
	lan := qemu.NewLAN(t)
	const mac = "52:54:00:4e:42:02"
	machines := filepath.Join(t.TempDir(), "machines.json")
	writeFile(t, machines, []byte(`{"`+mac+`": {"cmdline": "fixture.check=none fixture.tag=uefi"}}`))
	_, logs := serveLAN(t, lan, Options{Dirs: []string{netbootTree(t, f), ipxeDir}, Machines: machines})
	varsCopy := filepath.Join(t.TempDir(), "vars.fd")
	copyFile(t, vars, varsCopy)
	args := []string{"-machine", "q35",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
		"-drive", "if=pflash,format=raw,unit=1,file=" + varsCopy}
	nic := lan.Tap(t, "virtio-net-pci", mac)
	nic[len(nic)-1] += ",romfile=" // OVMF's own PXE, not the iPXE ROM
	res := qemu.BootT(t, qemu.Config{
		Binary:      lan.Binary(t, bin),
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
		Timeout:     8 * time.Minute,
		Memory:      1024,
		ExtraArgs:   append(args, nic...),
	})
	if !strings.Contains(res.Line, "tag=uefi") {
		t.Errorf("marker %q lacks tag=uefi", res.Line)
	}
	log := logs.String()
	// Debian's ipxe.efi is a symbolic link out of /usr/lib/ipxe (to /boot),
	// which the root does not follow: snponly.efi is served instead.
	for _, want := range []string{"class=efi-x86 ipxe=false", "boot=snponly.efi", "msg=sent proto=tftp", "file=snponly.efi", "class=efi-x86 ipxe=true", "path=/bzImage"} {
		if !strings.Contains(log, want) {
			t.Errorf("server log lacks %q", want)
		}
	}
}
