package nbd

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNetlinkFromFileKeepsSocket: the reconnect helper wraps its
// inherited socket once and reads it for the whole uptime; the garbage
// collector must not close it under the helper (it finalizes an
// unreachable *os.File by closing its descriptor).
func TestNetlinkFromFileKeepsSocket(t *testing.T) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		t.Fatal(err)
	}
	n := NetlinkFromFile(os.NewFile(uintptr(fd), "nbd-netlink"), 1)
	for range 3 {
		runtime.GC()
	}
	if _, err := unix.FcntlInt(uintptr(n.fd), unix.F_GETFD, 0); err != nil {
		t.Fatalf("the socket was closed after a garbage collection: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
		t.Error("Close left the socket open")
	}
}
