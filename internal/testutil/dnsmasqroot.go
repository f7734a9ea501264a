package testutil

import (
	"bufio"
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
// when it does not start. dnsmasq is stopped as soon as it has said it. It
// skips unless run as root with unshare.
func DnsmasqTFTPRoot(t testing.TB, conf string) (root, log string) {
	t.Helper()
	bin := Tool(t, "dnsmasq", "dnsmasq-base")
	unshare := Tool(t, "unshare", "util-linux")
	ip := Tool(t, "ip", "iproute2")
	if os.Geteuid() != 0 {
		t.Skip("starting dnsmasq in a network namespace needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	script := `"$1" link set lo up && exec "$2" -d -C "$3" --pid-file= --listen-address=127.0.0.1 --bind-interfaces`
	cmd := exec.CommandContext(ctx, unshare, "-n", "sh", "-c", script, "sh", ip, bin, conf)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait()
	}()
	const marker = "TFTP root is "
	var b strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		l := sc.Text()
		b.WriteString(l + "\n")
		if i := strings.Index(l, marker); i >= 0 {
			return l[i+len(marker):], b.String()
		}
	}
	return "", b.String()
}
