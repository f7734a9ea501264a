package kexec

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/testutil"
)

const toplevel = "/nix/store/9r8gpyv4b4yz8lqld2s3z3xh6s3kq0yc-nixos-system-nbimg-24.11"

var goldenScripts = []struct {
	name string
	s    Script
}{
	{"plain", Script{Init: toplevel + "/init"}},
	{"params", Script{Init: toplevel + "/init", KernelParams: "console=ttyS0 loglevel=4", Label: "nixos-system-nbimg-24.11"}},
	{"quotes", Script{Init: toplevel + "/init", KernelParams: " console=ttyS0\tloglevel=4 ", Cmdline: `a='b c' d=$HOME e=\x`}},
}

func TestScriptGolden(t *testing.T) {
	for _, tc := range goldenScripts {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.s.Text()
			if err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, tc.name+".kexec-boot", got)
		})
	}
}

// TestScriptShellcheck runs shellcheck on every golden script, as sh and
// as bash (users run it with either).
func TestScriptShellcheck(t *testing.T) {
	for _, tc := range goldenScripts {
		text, err := tc.s.Text()
		if err != nil {
			t.Fatal(err)
		}
		for _, shell := range []string{"sh", "dash", "bash"} {
			check.Shellcheck(t, tc.name, text, shell)
		}
	}
}

func TestScriptCommandLine(t *testing.T) {
	s := Script{Init: toplevel + "/init", KernelParams: " console=ttyS0  loglevel=4\t", Cmdline: "quiet"}
	got, err := s.CommandLine()
	if err != nil {
		t.Fatal(err)
	}
	if want := "init=" + toplevel + "/init console=ttyS0 loglevel=4 quiet"; got != want {
		t.Errorf("CommandLine = %q, want %q", got, want)
	}
}

func TestScriptRejects(t *testing.T) {
	for _, s := range []Script{
		{},
		{Init: "/nix/store/x/init\nkexec -e"},
		{Init: "/nix/store/a b/init"},
		{Init: "/init", KernelParams: "a\nb"},
		{Init: "/init", Cmdline: "x\x00"},
		{Init: "/init", Label: "x\ry"},
	} {
		if _, err := s.Text(); !errors.Is(err, ErrBadScript) {
			t.Errorf("%+v: err = %v, want ErrBadScript", s, err)
		}
	}
}

// fakeKexec writes a kexec into a new directory that records its
// arguments, one per line, in log (appending a line "--" after each call),
// and says in --help whether it knows --kexec-syscall-auto.
func fakeKexec(t *testing.T, log string, auto bool) string {
	t.Helper()
	bin := t.TempDir()
	help := "echo ' -l, --load  Load the new kernel'"
	if auto {
		help += "; echo ' -a, --kexec-syscall-auto  Use file based syscall'"
	}
	script := "#!/bin/sh\n" +
		"case $1 in --help) " + help + "; exit 0 ;; esac\n" +
		"for a in \"$@\"; do printf '%s\\n' \"$a\"; done >>'" + log + "'\n" +
		"echo -- >>'" + log + "'\n" +
		"case $1 in -e) exit 0 ;; esac\n"
	if err := os.WriteFile(filepath.Join(bin, "kexec"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// shells returns the POSIX shells to run kexec-boot with.
func shells(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, s := range []struct{ name, pkg string }{{"dash", "dash"}, {"bash", "bash"}, {"busybox", "busybox-static"}} {
		if p, err := exec.LookPath(s.name); err == nil {
			if s.name == "busybox" {
				p += " sh"
			}
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		testutil.SkipOrFail(t, "no shell to run kexec-boot: install dash or bash")
	}
	return out
}

// TestScriptRuns runs kexec-boot with a fake kexec, from another
// directory, with extra arguments, in every shell at hand.
func TestScriptRuns(t *testing.T) {
	tree := filepath.Join(t.TempDir(), "my tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	s := Script{Init: toplevel + "/init", KernelParams: "console=ttyS0 loglevel=4", Cmdline: `x='y z'`}
	text, err := s.Text()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{ScriptName: text, KernelName: []byte("k"), InitrdName: []byte("i")} {
		if err := os.WriteFile(filepath.Join(tree, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cwd := t.TempDir()
	rel, err := filepath.Rel(cwd, filepath.Join(tree, ScriptName))
	if err != nil {
		t.Fatal(err)
	}
	for _, shell := range shells(t) {
		for _, auto := range []bool{true, false} {
			for _, script := range []string{filepath.Join(tree, ScriptName), rel} {
				log := filepath.Join(t.TempDir(), "log")
				bin := fakeKexec(t, log, auto)
				argv := append(strings.Fields(shell), script, "fixture.tag=second", "a b")
				cmd := exec.Command(argv[0], argv[1:]...)
				cmd.Dir = cwd
				cmd.Env = []string{"PATH=" + bin}
				// The fake kexec -e returns, as a real one only does when
				// it fails: the script must say so and exit 1.
				out, err := cmd.CombinedOutput()
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "kexec -e returned") {
					t.Fatalf("%s: %v, want exit 1 after kexec -e returns\n%s", strings.Join(argv, " "), err, out)
				}
				got := testutil.ReadFile(t, log)
				want := "--load\n" + tree + "/bzImage\n--initrd=" + tree + "/initrd.gz\n" +
					"--command-line=init=" + toplevel + "/init console=ttyS0 loglevel=4 x='y z' fixture.tag=second a b\n"
				if auto {
					want += "--kexec-syscall-auto\n"
				}
				want += "--\n-e\n--\n"
				if string(got) != want {
					t.Errorf("%s (syscall-auto %v): kexec was called with\n%s\nwant\n%s", strings.Join(argv, " "), auto, got, want)
				}
			}
		}
	}
}

func TestScriptFailures(t *testing.T) {
	tree := t.TempDir()
	text, err := Script{Init: toplevel + "/init"}.Text()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(tree, ScriptName)
	if err := os.WriteFile(script, text, 0o755); err != nil {
		t.Fatal(err)
	}
	shell := shells(t)[0]
	run := func(path string) (string, error) {
		argv := append(strings.Fields(shell), script)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = []string{"PATH=" + path}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// No kexec at all.
	out, err := run(t.TempDir())
	if err == nil || !strings.Contains(out, "kexec not found: install kexec-tools") {
		t.Errorf("without kexec: %v, %q", err, out)
	}
	// kexec, but no kernel next to the script.
	log := filepath.Join(t.TempDir(), "log")
	out, err = run(fakeKexec(t, log, true))
	if err == nil || !strings.Contains(out, tree+"/bzImage not found") {
		t.Errorf("without bzImage: %v, %q", err, out)
	}
	if _, err := os.Stat(log); err == nil {
		t.Error("kexec ran without a kernel")
	}
}
