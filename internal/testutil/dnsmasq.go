package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// CheckDnsmasq reports a test error unless `dnsmasq --test` accepts the
// configuration file conf.
func CheckDnsmasq(t testing.TB, conf string) {
	t.Helper()
	bin := Tool(t, "dnsmasq", "dnsmasq-base")
	out, err := exec.Command(bin, "--test", "-C", conf).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "syntax check OK") {
		text, _ := os.ReadFile(conf)
		t.Errorf("dnsmasq --test -C %s: %v\n%s\n%s", conf, err, out, text)
	}
}

// DnsmasqRejects reports a test error if `dnsmasq --test` accepts text: the
// negative control that shows CheckDnsmasq can fail.
func DnsmasqRejects(t testing.TB, text string) {
	t.Helper()
	bin := Tool(t, "dnsmasq", "dnsmasq-base")
	conf := filepath.Join(t.TempDir(), "bad.conf")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command(bin, "--test", "-C", conf).Run(); err == nil {
		t.Errorf("dnsmasq --test accepts %q: the check proves nothing", text)
	}
}
