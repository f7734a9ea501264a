package kexec

import (
	"os/exec"
	"strings"
	"testing"
)

// FuzzScriptQuoting checks with a real shell that the command line kexec-boot
// stores is the one it was given, whatever bytes the parameters hold.
func FuzzScriptQuoting(f *testing.F) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		f.Skip("no sh")
	}
	for _, s := range []string{"console=ttyS0", `a='b c' d="$HOME" e=\x`, "'''", "$(reboot) `reboot` ${x}", "tab\there", "~ * ? [a]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, params string) {
		s := Script{Init: "/nix/store/x/init", KernelParams: params}
		text, err := s.Text()
		if err != nil {
			return
		}
		want, err := s.CommandLine()
		if err != nil {
			t.Fatalf("Text succeeded but CommandLine failed: %v", err)
		}
		var line string
		for _, l := range strings.Split(string(text), "\n") {
			if strings.HasPrefix(l, "cmdline=") {
				line = l
				break
			}
		}
		out, err := exec.Command(sh, "-c", line+"\nprintf '%s' \"$cmdline\"").Output()
		if err != nil {
			t.Fatalf("sh: %v on %q", err, line)
		}
		if string(out) != want {
			t.Errorf("the shell reads %q, want %q", out, want)
		}
	})
}
