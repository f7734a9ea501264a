package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
)

// The NFS round trip: nbimg pi-netimage writes the fixture system's NFS
// root, nfs-ganesha (VFS backend) serves it over NFSv3, and QEMU boots the
// kernel and initrd from the written boot/ with the written cmdline.txt;
// the fixture's stage 1 mounts the root over NFS and its stage 2 checks
// every store file's sha256 before printing the marker. The export speaks
// NFSv3 only (Protocols = 3), so a boot that reaches the marker mounted
// its root with NFSv3.
//
// The server runs in a network and mount namespace of its own, holding
// only a loopback interface, a private /run and rpcbind (which NFSv3
// needs for the mount protocol, and which must not meet the host's): it
// binds to 127.0.0.1 in there, and QEMU runs in the same network
// namespace, so the guest's user network reaches it at 10.0.2.2 and
// nothing outside the test can.

// ganesha is a running nfs-ganesha with its rpcbind.
type ganesha struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

// ganeshaReadyLine is what ganesha logs once it serves.
const ganeshaReadyLine = "NFS SERVER INITIALIZED"

// requireGanesha returns the programs the NFS server needs, skipping (or
// failing, when tools are required) when one is missing or not root.
func requireGanesha(t *testing.T) map[string]string {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "serving NFS with nfs-ganesha in a network namespace needs root")
	}
	tools := map[string]string{}
	for name, pkg := range map[string]string{
		"ganesha.nfsd": "nfs-ganesha", "rpcbind": "rpcbind", "unshare": "util-linux",
		"nsenter": "util-linux", "ip": "iproute2",
	} {
		tools[name] = testutil.Tool(t, name, pkg)
	}
	vfs, _ := filepath.Glob("/usr/lib/*/ganesha/libfsalvfs.so*")
	if len(vfs) == 0 {
		testutil.SkipOrFail(t, "nfs-ganesha's VFS backend (libfsalvfs.so) not found: install the Debian package nfs-ganesha-vfs")
	}
	return tools
}

// startGanesha serves export over NFSv3 (TCP; NFS on port 2049, mountd on
// 20048) until the test ends.
func startGanesha(t *testing.T, tools map[string]string, export string) *ganesha {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "ganesha.conf")
	g := &ganesha{log: filepath.Join(dir, "ganesha.log"), done: make(chan error, 1)}
	text := fmt.Sprintf(`NFS_CORE_PARAM {
	Protocols = 3;
	NFS_Port = 2049;
	MNT_Port = 20048;
	Bind_addr = 127.0.0.1;
	Enable_NLM = false;
	Enable_RQUOTA = false;
}
EXPORT {
	Export_Id = 1;
	Path = %q;
	Pseudo = %q;
	Access_Type = RW;
	Squash = No_Root_Squash;
	Protocols = 3;
	Transports = TCP;
	SecType = sys;
	FSAL { Name = VFS; }
}
`, export, export)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// Ganesha resolves Bind_addr with AI_ADDRCONFIG, which ignores
	// loopback addresses: lo gets two documentation addresses too. The
	// script is PID 1 of a PID namespace whose parent, unshare, kills it
	// when it dies itself (--kill-child); the kernel then kills rpcbind
	// too, so nothing outlives the test.
	script := strings.Join([]string{
		"set -e",
		"ip link set lo up",
		"ip addr add 192.0.2.1/32 dev lo",
		"ip -6 addr add 2001:db8::1/128 dev lo",
		"mount -t tmpfs -o mode=0755 tmpfs /run",
		tools["rpcbind"] + " -f -w &",
		"sleep 0.5",
		fmt.Sprintf("exec %s -F -f %s -L %s -p %s", tools["ganesha.nfsd"], conf, g.log, filepath.Join(dir, "ganesha.pid")),
	}, "\n")
	g.cmd = exec.Command(tools["unshare"], "--net", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private", "sh", "-c", script)
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	g.cmd.Stdout, g.cmd.Stderr = out, out
	start := time.Now()
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("starting ganesha: %v", err)
	}
	go func() { g.done <- g.cmd.Wait() }()
	t.Cleanup(func() { g.stop(t) })

	for deadline := time.Now().Add(60 * time.Second); ; {
		b, _ := os.ReadFile(g.log)
		if strings.Contains(string(b), ganeshaReadyLine) {
			t.Logf("ganesha serves %s over NFSv3 after %.1fs", export, time.Since(start).Seconds())
			return g
		}
		select {
		case err := <-g.done:
			g.done <- err
			o, _ := os.ReadFile(filepath.Join(dir, "stdout"))
			t.Fatalf("ganesha exited (%v) before serving:\n%s\n%s", err, o, piTail(string(b), 20))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ganesha is not serving after 60s:\n%s", piTail(string(b), 20))
		}
	}
}

// netns is the path of the server's network namespace (unshare is in it;
// only its child is in the new PID namespace).
func (g *ganesha) netns() string { return fmt.Sprintf("/proc/%d/ns/net", g.cmd.Process.Pid) }

// stop ends the server: killing unshare takes its PID namespace down
// with it (--kill-child), ganesha and rpcbind included.
func (g *ganesha) stop(t *testing.T) {
	select {
	case err := <-g.done:
		g.done <- err
		return
	default:
	}
	g.cmd.Process.Kill()
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		t.Errorf("ganesha's unshare (pid %d) still runs 10s after SIGKILL", g.cmd.Process.Pid)
	}
}

func piTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// qemuInNetns writes a wrapper that runs QEMU in the network namespace.
func qemuInNetns(t *testing.T, nsenter, qemuBin, netns string) string {
	t.Helper()
	w := filepath.Join(t.TempDir(), "qemu-in-netns")
	script := fmt.Sprintf("#!/bin/sh\nexec %s --net=%s -- %s \"$@\"\n", nsenter, netns, qemuBin)
	if err := os.WriteFile(w, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestPiNetimageBootsNFS(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU over NFS (about a minute under TCG)")
	}
	f := testutil.LoadFixture(t)
	qemuBin := qemu.Require(t)
	tools := requireGanesha(t)

	dir := filepath.Join(t.TempDir(), "pi")
	root := filepath.Join(dir, "os", piName(t, f))
	args := []string{"--quiet", "pi-netimage", "-o", dir, "--toplevel", f.Toplevel, "--closure", f.ClosureDir,
		"--firmware", piFirmware(t), "--nfs-root", "10.0.2.2:" + root, "--nfs-options", "proto=tcp,mountproto=tcp",
		"--cmdline", "fixture.root=nfs"}
	if code, _, errOut := runApp(t, args...); code != exitOK {
		t.Fatalf("nbimg %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	cmdline := strings.TrimSpace(string(piRead(t, filepath.Join(dir, "boot", "cmdline.txt"))))

	g := startGanesha(t, tools, root)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	c := qemu.Config{
		Kernel:      filepath.Join(dir, "boot", "kernel8.img"), // the x86 fixture's bzImage, under the Pi's name
		Initrd:      filepath.Join(dir, "boot", "initrd"),
		Cmdline:     cmdline,
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
		Binary:      qemuInNetns(t, tools["nsenter"], qemuBin, g.netns()),
		ExtraArgs:   []string{"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"},
	}
	if os.Getenv(qemu.ConsoleEnv) == "1" {
		c.Console = os.Stderr
	}
	res, err := qemu.Boot(ctx, c)
	if err != nil {
		b, _ := os.ReadFile(g.log)
		var be *qemu.BootError
		if errors.As(err, &be) {
			t.Fatalf("%v\n--- ganesha log (tail) ---\n%s", err, piTail(string(b), 15))
		}
		t.Fatal(err)
	}
	t.Logf("marker after %.1fs over NFSv3: %s", res.Elapsed.Seconds(), res.Line)
	console := string(res.Console)
	if !strings.Contains(console, "nfsroot=10.0.2.2:"+root+",vers=3") {
		t.Errorf("the guest did not boot with cmdline.txt's nfsroot=")
	}
}
