package stage0

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/verity"
)

func validNBD() *Config {
	return &Config{
		Version: ConfigVersion, URL: "nbd://10.0.2.2:10809/store", Size: 3 * 4096,
		KernelVersion: "6.1.0-1-cloud-amd64", Modules: []string{"nbd", "dm_verity"},
		Verity: &verity.Params{DataBlocks: 1, HashOffset: 4096,
			RootHex: strings.Repeat("ab", 32), SaltHex: "0011"},
	}
}

func validHTTP() *Config {
	return &Config{
		Version: ConfigVersion, URL: "http://10.0.2.2:8000/nix-store.squashfs", Size: 4096,
		KernelVersion: "6.1", SHA256: strings.Repeat("cd", 32),
	}
}

func TestConfigRoundTrip(t *testing.T) {
	for _, c := range []*Config{validNBD(), validHTTP()} {
		b, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseConfig(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		again, err := got.Marshal()
		if err != nil || string(again) != string(b) {
			t.Errorf("round trip changed the configuration:\n%s\n%s (%v)", b, again, err)
		}
	}
	c := validHTTP()
	if c.ImageTarget() != "/nix-store.squashfs" || c.InitPath() != "/init" || c.GiveUp() != 300*time.Second {
		t.Error("defaults wrong")
	}
	c.GiveUpSeconds = -1
	if c.GiveUp() != 0 {
		t.Error("negative give-up is not forever")
	}
}

func TestConfigRejects(t *testing.T) {
	for name, mod := range map[string]func(c *Config){
		"version":        func(c *Config) { c.Version = 2 },
		"scheme":         func(c *Config) { c.URL = "ftp://x/y" },
		"no host":        func(c *Config) { c.URL = "nbd:///export" },
		"credentials":    func(c *Config) { c.URL = "nbd://u:p@host/x" },
		"port":           func(c *Config) { c.URL = "nbd://host:99999/x" },
		"size":           func(c *Config) { c.Size = 0 },
		"kernel version": func(c *Config) { c.KernelVersion = "../x" },
		"no verity":      func(c *Config) { c.Verity = nil },
		"root":           func(c *Config) { c.Verity.RootHex = "zz" },
		"hash offset":    func(c *Config) { c.Verity.HashOffset = 100 },
		"hash past end":  func(c *Config) { c.Verity.HashOffset = 3 * 4096 },
		"relative init":  func(c *Config) { c.Init = "init" },
	} {
		c := validNBD()
		mod(c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) && !errors.Is(err, ErrScheme) {
			t.Errorf("%s: accepted or wrong error: %v", name, err)
		}
	}
	h := validHTTP()
	h.SHA256 = "00"
	if err := h.Validate(); !errors.Is(err, ErrConfig) {
		t.Errorf("short sha256: %v", err)
	}
	if _, err := ParseConfig([]byte(`{"version":1,"bogus":1}`)); !errors.Is(err, ErrConfig) {
		t.Errorf("unknown field: %v", err)
	}
}

func TestParseURL(t *testing.T) {
	for in, want := range map[string]StoreURL{
		"nbd://10.0.2.2":              {Scheme: "nbd", Addr: "10.0.2.2:10809"},
		"nbd://10.0.2.2:1234/store":   {Scheme: "nbd", Addr: "10.0.2.2:1234", Export: "store"},
		"nbd://[::1]/a/b":             {Scheme: "nbd", Addr: "[::1]:10809", Export: "a/b"},
		"http://h:8000/x.squashfs":    {Scheme: "http", Addr: "h:8000"},
		"https://example.org/x?y=1#z": {Scheme: "https", Addr: "example.org"},
	} {
		got, err := ParseURL(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		want.Raw = in
		if got != want {
			t.Errorf("ParseURL(%q) = %+v, want %+v", in, got, want)
		}
	}
	for _, in := range []string{"", "nbd://", "file:///x", "nbd://h/x?q", "http://", "%zz"} {
		if _, err := ParseURL(in); err == nil {
			t.Errorf("ParseURL(%q) accepted", in)
		}
	}
}

func TestParseCmdline(t *testing.T) {
	o, err := ParseCmdline("console=ttyS0 nbimg.url=http://10.0.2.2:8000/x nbimg.giveup=30 init=/x nbimg.debug")
	if err != nil {
		t.Fatal(err)
	}
	if o.URL != "http://10.0.2.2:8000/x" || o.GiveUp == nil || *o.GiveUp != 30*time.Second || !o.Debug {
		t.Errorf("overrides: %+v", o)
	}
	o, err = ParseCmdline("nbimg.giveup=-1")
	if err != nil || o.GiveUp == nil || *o.GiveUp != 0 {
		t.Errorf("giveup=-1: %+v %v", o, err)
	}
	for _, bad := range []string{"nbimg.giveup=x", "nbimg.url=ftp://x", "nbimg.typo=1"} {
		if _, err := ParseCmdline(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{1, 2, 4, 8, 8, 8}
	for i, w := range want {
		if got := Backoff(i); got != w*time.Second {
			t.Errorf("Backoff(%d) = %v, want %v", i, got, w*time.Second)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, c := range []*Config{validNBD(), validHTTP()} {
		b, err := c.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"version":1,"url":"nbd://x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("a parsed configuration does not marshal: %v", err)
		}
		if _, err := ParseConfig(out); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

// TestConfigPast4GiB: sizes and offsets past 2^32 survive the JSON round
// trip (they are int64/uint64 throughout) and reach the dm-verity table
// unchanged.
func TestConfigPast4GiB(t *testing.T) {
	const data = 5<<30 + 4096 // bytes, a multiple of 4096
	c := validNBD()
	c.Size = data + 41*4096 + 4096
	c.Verity.DataBlocks = data / 4096
	c.Verity.HashOffset = data
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != c.Size || got.Verity.HashOffset != data || got.Verity.DataBlocks != data/4096 {
		t.Fatalf("round trip: size %d, hash offset %d, data blocks %d", got.Size, got.Verity.HashOffset, got.Verity.DataBlocks)
	}
	if got.Verity.Sectors() != data/512 {
		t.Errorf("sectors %d, want %d", got.Verity.Sectors(), data/512)
	}
	tab, err := got.Verity.Table("43:0", "43:0")
	if err != nil {
		t.Fatal(err)
	}
	if want := " 1310721 1310722 sha256 "; !strings.Contains(tab, want) {
		t.Errorf("table %q lacks %q (data blocks, hash start block)", tab, want)
	}
}

func TestConfigHTTPSNeedsCA(t *testing.T) {
	c := validHTTP()
	c.URL = "https://10.0.2.2:8443/nix-store.squashfs"
	if err := c.Validate(); !errors.Is(err, ErrNoCA) {
		t.Errorf("https without a CA bundle: %v, want %v", err, ErrNoCA)
	}
	c.CAFile = "nbimg/ca.pem"
	if err := c.Validate(); err == nil {
		t.Error("a relative CA path was accepted")
	}
	c.CAFile = CAPath
	if err := c.Validate(); err != nil {
		t.Errorf("https with a CA bundle: %v", err)
	}
}
