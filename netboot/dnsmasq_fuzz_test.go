package netboot

import (
	"strings"
	"testing"
)

// dnsmasqRead reads one option value as dnsmasq does (seen with dnsmasq
// 2.90): inside double quotes \\, \" and \t are escapes and commas, # and
// blanks are kept; outside them a comma ends the value.
func dnsmasqRead(v string) (string, bool) {
	var b strings.Builder
	quoted := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"':
			quoted = !quoted
		case quoted && c == '\\' && i+1 < len(v):
			i++
			switch v[i] {
			case 't':
				b.WriteByte('\t')
			case '\\', '"':
				b.WriteByte(v[i])
			default:
				return "", false
			}
		case !quoted && (c == ',' || c == '#' || c == ' ' || c == '\t' || c == '\\'):
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), !quoted
}

// FuzzDnsmasqQuote checks that every value is refused (only for control
// characters) or written so that dnsmasq reads back exactly the value, on
// one line.
func FuzzDnsmasqQuote(f *testing.F) {
	for _, s := range []string{"/srv/tftp", "/a,b", "/a #b", `/a\b"c`, "/a\tb", "trailing ", "", "\n", "caf\xe9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := DnsmasqQuote(s)
		if err != nil {
			if !hasControl(strings.ReplaceAll(s, "\t", "")) {
				t.Fatalf("%q refused: %v", s, err)
			}
			return
		}
		if strings.ContainsAny(q, "\n\r\x00") {
			t.Fatalf("%q written as %q, more than one line", s, q)
		}
		got, ok := dnsmasqRead(q)
		if !ok || got != s {
			t.Fatalf("%q written as %q reads back as %q (%v)", s, q, got, ok)
		}
	})
}
