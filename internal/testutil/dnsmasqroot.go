package testutil

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// DnsmasqTFTPRoot starts dnsmasq on the configuration file conf in a
// private network namespace (loopback only, so it binds nothing of the
// host's) and returns the TFTP root it reports using, or "" with its log
// when it does not start. It skips unless run as root with unshare.
func DnsmasqTFTPRoot(t testing.TB, conf string) (root, log string) {
	t.Helper()
	bin := Tool(t, "dnsmasq", "dnsmasq-base")
	unshare := Tool(t, "unshare", "util-linux")
	ip := Tool(t, "ip", "iproute2")
	if os.Geteuid() != 0 {
		t.Skip("starting dnsmasq in a network namespace needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	script := `"$1" link set lo up && exec timeout 0.5 "$2" -d -C "$3" --pid-file= --listen-address=127.0.0.1 --bind-interfaces`
	out, _ := exec.CommandContext(ctx, unshare, "-n", "sh", "-c", script, "sh", ip, bin, conf).CombinedOutput()
	const marker = "TFTP root is "
	for _, l := range strings.Split(string(out), "\n") {
		if i := strings.Index(l, marker); i >= 0 {
			return l[i+len(marker):], string(out)
		}
	}
	return "", string(out)
}
