package cmdline

import (
	"errors"
	"strings"
	"testing"
)

const top = "/nix/store/5n0mckly1mfcz15pmrw4vxa257wlwgk4-nixos-system-host"

func TestLineOrder(t *testing.T) {
	l := Line{
		Pre:          []string{"root=/dev/nfs", "rw"},
		Init:         InitPath(top + "/"),
		Post:         []string{"initrd=initrd"},
		KernelParams: "  console=tty0   loglevel=4\t",
		Extra:        []string{"console=ttyS0,115200", "boot.shell_on_fail  quiet"},
	}
	got, err := l.String()
	if err != nil {
		t.Fatal(err)
	}
	want := "root=/dev/nfs rw init=" + top + "/init initrd=initrd console=tty0 loglevel=4 console=ttyS0,115200 boot.shell_on_fail quiet"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestLineRefuses(t *testing.T) {
	for name, l := range map[string]Line{
		"no init":          {},
		"relative init":    {Init: "nix/store/x/init"},
		"init with space":  {Init: "/nix/store/x y/init"},
		"newline in param": {Init: "/i", KernelParams: "a\nb"},
		"quote in extra":   {Init: "/i", Extra: []string{`foo="a b"`}},
		"NUL in pre":       {Init: "/i", Pre: []string{"a\x00"}},
		"CR in post":       {Init: "/i", Post: []string{"a\rb"}},
	} {
		if _, err := l.Words(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestCheckTextNamesTheFlag(t *testing.T) {
	err := CheckText("--cmdline", "a\"b")
	if err == nil || !strings.Contains(err.Error(), "--cmdline") {
		t.Fatalf("err = %v", err)
	}
	if err := CheckText("--cmdline", "console=ttyS0,115200 quiet"); err != nil {
		t.Fatal(err)
	}
}

func FuzzLine(f *testing.F) {
	f.Add("/nix/store/x/init", "console=tty0 a=b", "quiet")
	f.Add("/i", "a\nb", "")
	f.Add("/i", "", "x\"y")
	f.Fuzz(func(t *testing.T, init, params, extra string) {
		l := Line{Init: init, KernelParams: params, Extra: []string{extra}}
		s, err := l.String()
		if err != nil {
			return
		}
		if strings.ContainsAny(s, badChars) || strings.Contains(s, "  ") || strings.TrimSpace(s) != s {
			t.Fatalf("unsafe line %q", s)
		}
		if !strings.HasPrefix(s, "init="+init) {
			t.Fatalf("line %q does not start with init=", s)
		}
		// Every word of the inputs is there, in order.
		want := append([]string{"init=" + init}, strings.Fields(params)...)
		want = append(want, strings.Fields(extra)...)
		if got := strings.Join(want, " "); got != s {
			t.Fatalf("got %q, want %q", s, got)
		}
	})
}
