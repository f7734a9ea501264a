package qemu

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// DnsmasqLog collects the output of the dnsmasq servers StartPXEServers
// starts, from several goroutines.
type DnsmasqLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *DnsmasqLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what the servers printed so far.
func (l *DnsmasqLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartPXEServers starts Debian's dnsmasq twice in n, as on a LAN with a
// PXE tree: the network's own DHCP server on the peer side (addresses
// 10.99.0.10 to .50, no PXE options), and a server running conf (a tree's
// dnsmasq.conf: proxy DHCP and TFTP) on the bridge. Both stop when the
// test ends; their output goes to the returned log.
func (n *Netns) StartPXEServers(t testing.TB, conf string) *DnsmasqLog {
	t.Helper()
	dnsmasq := testutil.Tool(t, "dnsmasq", "dnsmasq-base")
	log := &DnsmasqLog{}
	for _, args := range [][]string{
		{"--conf-file=/dev/null", "--port=0", "--interface=" + n.Peer,
			"--dhcp-range=10.99.0.10,10.99.0.50,255.255.255.0,1h", "--dhcp-leasefile=" + filepath.Join(t.TempDir(), "leases")},
		{"-C", conf, "--interface=" + n.Bridge},
	} {
		d := n.Command(t.Context(), dnsmasq, append([]string{"-k", "--user=root", "--bind-interfaces", "--log-facility=-",
			"--pid-file=" + filepath.Join(t.TempDir(), "dnsmasq.pid")}, args...)...)
		d.Stdout, d.Stderr = log, log
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			d.Process.Kill() //nolint:errcheck // it may have exited; Wait reports how
			d.Wait()         //nolint:errcheck // killed on purpose
		})
	}
	return log
}
