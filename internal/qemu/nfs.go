package qemu

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/testutil"
)

// NFSServer is an NFSv4 server (nfs-ganesha) exporting one directory to
// QEMU guests, for NFS-root boots.
type NFSServer struct {
	// Port is where it listens on 127.0.0.1; guests reach it as
	// 10.0.2.2:Port through QEMU's user network.
	Port int
	// Pseudo is the export's path in the NFSv4 namespace ("/name").
	Pseudo string
}

// GuestHost is the host as a guest on QEMU's user network sees it.
const GuestHost = "10.0.2.2"

// NFSRoot returns the nfsroot= value that mounts the export from a guest:
// HOST:/PSEUDO,port=PORT.
func (s *NFSServer) NFSRoot() string {
	return fmt.Sprintf("%s:%s,port=%d", GuestHost, s.Pseudo, s.Port)
}

// ServeNFS exports dir over NFSv4.1 (TCP, no root squashing, read-write)
// as /name with nfs-ganesha, until the test ends. It skips (or fails, when
// tools are required) without nfs-ganesha and nfs-ganesha-vfs, and needs
// root. Guests need a virtio NIC on the user network, e.g. ExtraArgs
// "-nic", "user,model=virtio-net-pci".
func ServeNFS(t testing.TB, dir, name string) *NFSServer {
	t.Helper()
	bin := testutil.Tool(t, "ganesha.nfsd", "nfs-ganesha")
	testutil.File(t, "/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so", "nfs-ganesha-vfs")
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "serving NFS with nfs-ganesha needs root")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(abs+name, " ;{}\"'") || strings.Contains(name, "/") {
		t.Fatalf("ServeNFS: %q or %q cannot go into a ganesha configuration", abs, name)
	}
	port := freePort(t)
	work := t.TempDir()
	conf := fmt.Sprintf(`NFS_CORE_PARAM {
	Protocols = 4;
	NFS_Port = %d;
	Bind_addr = 127.0.0.1;
	Enable_NLM = false;
	Enable_RQUOTA = false;
}
NFSv4 {
	Graceless = true;
	RecoveryBackend = fs;
	RecoveryRoot = %s/recovery;
}
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
	Export_Id = 1;
	Path = %s;
	Pseudo = /%s;
	Access_Type = RW;
	Squash = No_Root_Squash;
	Protocols = 4;
	Transports = TCP;
	SecType = sys;
	FSAL { Name = VFS; }
}
`, port, work, abs, name)
	confPath := filepath.Join(work, "ganesha.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(work, "ganesha.log")
	cmd := exec.Command(bin, "-F", "-f", confPath, "-L", logPath, "-p", filepath.Join(work, "ganesha.pid"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting ganesha.nfsd: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }() //nolint:errcheck // reported through the log
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // may have exited
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill() //nolint:errcheck // may have exited
			<-done
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("ganesha.nfsd exited at start; its log:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("ganesha.nfsd does not listen on port %d; its log:\n%s", port, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &NFSServer{Port: port, Pseudo: "/" + name}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
