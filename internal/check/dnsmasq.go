package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// Dnsmasq reports a test error unless `dnsmasq --test` accepts the
// configuration file conf.
func Dnsmasq(t testing.TB, conf string) {
	t.Helper()
	bin := testutil.Tool(t, "dnsmasq", "dnsmasq-base")
	out, stderr, err := run("", nil, nil, bin, "--test", "-C", conf)
	all := string(out) + string(stderr)
	if err != nil || !strings.Contains(all, "syntax check OK") {
		text, rerr := os.ReadFile(conf)
		if rerr != nil {
			text = []byte(rerr.Error())
		}
		t.Errorf("dnsmasq --test -C %s: %v\n%s\n%s", conf, err, all, text)
	}
}

// DnsmasqRejects reports a test error if `dnsmasq --test` accepts text: the
// negative control that shows Dnsmasq can fail.
func DnsmasqRejects(t testing.TB, text string) {
	t.Helper()
	bin := testutil.Tool(t, "dnsmasq", "dnsmasq-base")
	conf := filepath.Join(t.TempDir(), "bad.conf")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run("", nil, nil, bin, "--test", "-C", conf); err == nil {
		t.Errorf("dnsmasq --test accepts %q: the check proves nothing", text)
	}
}
