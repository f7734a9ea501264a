package qemu

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/testutil"
)

// GuestHost is the host as a guest on QEMU's user network sees it.
const GuestHost = "10.0.2.2"

// NFSOptions says what ServeNFS serves.
type NFSOptions struct {
	// Version is the protocol: 4 (NFSv4.1, the default) or 3 (NFSv3 with
	// the mount protocol, registered with an rpcbind of the server's own).
	Version int
	// Pseudo is the path guests mount: the export's place in the NFSv4
	// namespace, or for NFSv3 the mount path. Default: the exported
	// directory's absolute path (which NFSv3 needs, as ganesha's mount
	// daemon looks exports up by directory).
	Pseudo string
}

// NFSServer is an nfs-ganesha exporting one directory over TCP (no root
// squashing, read-write) to QEMU guests, for NFS-root boots.
//
// It runs in network, mount and PID namespaces of its own: the network
// one holds only a loopback interface, on which ganesha listens at the
// standard ports (NFS 2049, mountd 20048, rpcbind 111), and the private
// /run keeps its rpcbind from meeting the host's. QEMU started through
// Attach joins that network namespace, so its user network reaches the
// server at GuestHost, and nothing outside the test can.
type NFSServer struct {
	// Version is the protocol served: 3 or 4.
	Version int
	// Pseudo is the path guests mount.
	Pseudo string

	cmd  *exec.Cmd // unshare, in the new network namespace
	done chan error
	log  string
}

// nfsReadyLine is what ganesha logs once it serves.
const nfsReadyLine = "NFS SERVER INITIALIZED"

// nfsStartTimeout bounds ganesha's start, rpcbind's included.
const nfsStartTimeout = 60 * time.Second

// ServeNFS exports dir with nfs-ganesha as o says, until the test ends.
// It skips (or fails, when tools are required) without root, nfs-ganesha,
// its VFS backend (nfs-ganesha-vfs), util-linux's unshare and nsenter,
// iproute2, and rpcbind for NFSv3. Guests need Attach and a NIC on the
// user network, e.g. ExtraArgs "-nic", "user,model=virtio-net-pci".
func ServeNFS(t testing.TB, dir string, o NFSOptions) *NFSServer {
	t.Helper()
	if o.Version == 0 {
		o.Version = 4
	}
	if o.Version != 3 && o.Version != 4 {
		t.Fatalf("ServeNFS: NFS version %d; want 3 or 4", o.Version)
	}
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "serving NFS with nfs-ganesha in private namespaces needs root")
	}
	ganesha := testutil.Tool(t, "ganesha.nfsd", "nfs-ganesha")
	unshare := testutil.Tool(t, "unshare", "util-linux")
	testutil.Tool(t, "nsenter", "util-linux") // for Attach
	ip := testutil.Tool(t, "ip", "iproute2")
	var rpcbind string
	if o.Version == 3 {
		rpcbind = testutil.Tool(t, "rpcbind", "rpcbind")
	}
	if vfs, _ := filepath.Glob("/usr/lib/*/ganesha/libfsalvfs.so*"); len(vfs) == 0 {
		testutil.SkipOrFail(t, "nfs-ganesha's VFS backend (libfsalvfs.so) not found: install the Debian package nfs-ganesha-vfs")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if o.Pseudo == "" {
		o.Pseudo = abs
	}
	work := t.TempDir()
	for _, s := range []string{abs, o.Pseudo, work} {
		if strings.ContainsAny(s, " ;{}\"'\\\n") {
			t.Fatalf("ServeNFS: %q cannot go into a ganesha configuration or a shell script", s)
		}
	}
	if !strings.HasPrefix(o.Pseudo, "/") {
		t.Fatalf("ServeNFS: pseudo path %q is not absolute", o.Pseudo)
	}
	conf := fmt.Sprintf(`NFS_CORE_PARAM {
	Protocols = %[1]d;
	NFS_Port = 2049;
	MNT_Port = 20048;
	Bind_addr = 127.0.0.1;
	Enable_NLM = false;
	Enable_RQUOTA = false;
}
NFSv4 {
	Graceless = true;
	RecoveryBackend = fs;
	RecoveryRoot = %[2]s/recovery;
}
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
	Export_Id = 1;
	Path = %[3]s;
	Pseudo = %[4]s;
	Access_Type = RW;
	Squash = No_Root_Squash;
	Protocols = %[1]d;
	Transports = TCP;
	SecType = sys;
	FSAL { Name = VFS; }
}
`, o.Version, work, abs, o.Pseudo)
	confPath := filepath.Join(work, "ganesha.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &NFSServer{Version: o.Version, Pseudo: o.Pseudo, done: make(chan error, 1), log: filepath.Join(work, "ganesha.log")}

	// Ganesha resolves Bind_addr with AI_ADDRCONFIG, which ignores
	// loopback addresses: lo gets two documentation addresses too. The
	// script is PID 1 of a PID namespace whose parent, unshare, kills it
	// when it dies itself (--kill-child); the kernel then kills rpcbind
	// too, so nothing outlives the test.
	script := []string{
		"set -e",
		ip + " link set lo up",
		ip + " addr add 192.0.2.1/32 dev lo",
		ip + " -6 addr add 2001:db8::1/128 dev lo",
		"mount -t tmpfs -o mode=0755 tmpfs /run",
	}
	if rpcbind != "" {
		// Ganesha registers its programs at start: rpcbind must listen.
		script = append(script,
			rpcbind+" -f &",
			"while [ ! -S /run/rpcbind.sock ]; do sleep 0.1; done")
	}
	script = append(script, fmt.Sprintf("exec %s -F -f %s -L %s -p %s",
		ganesha, confPath, s.log, filepath.Join(work, "ganesha.pid")))
	s.cmd = exec.Command(unshare, "--net", "--mount", "--pid", "--fork", "--kill-child",
		"--propagation", "private", "sh", "-c", strings.Join(script, "\n"))
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	outPath := filepath.Join(work, "output")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	s.cmd.Stdout, s.cmd.Stderr = out, out
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting ganesha.nfsd: %v", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() { s.stop(t) })

	deadline := time.Now().Add(nfsStartTimeout)
	for {
		b, _ := os.ReadFile(s.log)
		if strings.Contains(string(b), nfsReadyLine) {
			as := ""
			if o.Pseudo != abs {
				as = " as " + o.Pseudo
			}
			t.Logf("ganesha serves %s%s over NFSv%d after %.1fs", abs, as, o.Version, time.Since(start).Seconds())
			return s
		}
		select {
		case err := <-s.done:
			s.done <- err
			output, _ := os.ReadFile(outPath)
			t.Fatalf("ganesha.nfsd exited (%v) before serving:\n%s\n--- ganesha log (tail) ---\n%s", err, output, Tail(b, 20))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ganesha.nfsd is not serving after %v:\n%s", nfsStartTimeout, Tail(b, 20))
		}
	}
}

// NFSRoot returns the nfsroot= value that mounts the export from a guest:
// GuestHost:Pseudo, with the options NFSv3 needs over TCP.
func (s *NFSServer) NFSRoot() string {
	r := GuestHost + ":" + s.Pseudo
	if s.Version == 3 {
		r += ",vers=3,proto=tcp,mountproto=tcp"
	}
	return r
}

// Attach makes c's QEMU run in the server's network namespace, where its
// user network reaches the server at GuestHost: it sets c.Binary to a
// wrapper script that runs the binary c named (default DefaultBinary)
// under nsenter.
func (s *NFSServer) Attach(t testing.TB, c *Config) {
	t.Helper()
	bin := c.Binary
	if bin == "" {
		bin = DefaultBinary
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("attaching QEMU to the NFS server: %v", err)
	}
	nsenter := testutil.Tool(t, "nsenter", "util-linux")
	w := filepath.Join(t.TempDir(), "qemu-in-netns")
	script := fmt.Sprintf("#!/bin/sh\nexec %s --net=/proc/%d/ns/net -- %s \"$@\"\n", nsenter, s.cmd.Process.Pid, p)
	if err := os.WriteFile(w, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c.Binary = w
}

// LogTail returns the last n lines of ganesha's log, for failure messages.
func (s *NFSServer) LogTail(n int) string {
	b, _ := os.ReadFile(s.log)
	return Tail(b, n)
}

// stop ends the server. It kills the PID namespace's init (the script,
// by then ganesha): the kernel kills and reaps the rest of the namespace,
// rpcbind included, before unshare reaps init and exits, so nothing is
// left once unshare has. When unshare's child cannot be found, killing
// unshare kills it too (--kill-child), without that wait.
func (s *NFSServer) stop(t testing.TB) {
	select {
	case err := <-s.done:
		s.done <- err
		return
	default:
	}
	pid := s.cmd.Process.Pid
	children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	init := strings.Fields(string(children))
	if n, err := strconv.Atoi(strings.Join(init, " ")); err == nil && n > 1 {
		syscall.Kill(n, syscall.SIGKILL) //nolint:errcheck // may have exited
	} else {
		s.cmd.Process.Kill() //nolint:errcheck // may have exited
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill() //nolint:errcheck // may have exited
		t.Errorf("ganesha's namespace (unshare, pid %d) still runs 10s after SIGKILL", pid)
	}
}
