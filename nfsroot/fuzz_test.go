package nfsroot

import (
	"strings"
	"testing"
)

// FuzzCmdline checks that whatever the flags say, cmdline.txt is one line
// whose words give back the NFS root, the init and the parameters, or the
// flags are refused.
func FuzzCmdline(f *testing.F) {
	f.Add("192.168.1.2:/srv/nfs/pi", "proto=tcp", "/nix/store/aaaa-nixos-system/init", "console=ttyS1,115200 loglevel=7", "quiet")
	f.Add("nas:/a", "", "/i", "", "")
	f.Add("nas:/a b", ",nolock,", "/i", "a\nb", "x")
	f.Add("h:/x", "vers=4", "/i", "", "")
	f.Fuzz(func(t *testing.T, root, opts, init, params, extra string) {
		r, err := ParseNFSRoot(root)
		if err != nil {
			return
		}
		b, err := Cmdline{Root: r, Options: opts, Init: init, KernelParams: params, Extra: extra}.Text()
		if err != nil {
			return
		}
		s := string(b)
		if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") || strings.ContainsAny(s, "\r\x00") {
			t.Fatalf("not one line: %q", s)
		}
		words := strings.Fields(s)
		if len(words) < 6 || words[0] != "root=/dev/nfs" || words[2] != "rw" || words[3] != "ip=dhcp" || words[4] != "rootwait" || words[5] != "init="+init {
			t.Fatalf("words %q", words)
		}
		nfs := strings.TrimPrefix(words[1], "nfsroot=")
		if !strings.HasPrefix(nfs, r.String()+",vers=3") {
			t.Fatalf("nfsroot= %q for root %q options %q", nfs, root, opts)
		}
		// Exactly one option sets the version: the vers=3 nbimg writes.
		versions := 0
		for _, o := range strings.Split(strings.TrimPrefix(nfs, r.String()+","), ",") {
			switch k, _, _ := strings.Cut(o, "="); k {
			case "vers", "nfsvers", "v2", "v3", "v4", "v4.0", "v4.1", "v4.2":
				versions++
			}
		}
		if versions != 1 {
			t.Fatalf("nfsroot= %q sets the NFS version %d times (options %q)", nfs, versions, opts)
		}
		want := append(strings.Fields(params), strings.Fields(extra)...)
		if strings.Join(words[6:], " ") != strings.Join(want, " ") {
			t.Fatalf("parameters %q, want %q", words[6:], want)
		}
	})
}

// FuzzParseSerial checks that an accepted serial number is a safe
// directory name of 8 lower-case hexadecimal digits.
func FuzzParseSerial(f *testing.F) {
	for _, s := range []string{"1a2b3c4d", "DEADBEEF", "../../..", "1234567", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSerial(s)
		if err != nil {
			return
		}
		if len(v) != 8 || strings.Trim(v, "0123456789abcdef") != "" || !strings.EqualFold(v, s) {
			t.Fatalf("ParseSerial(%q) = %q", s, v)
		}
	})
}
