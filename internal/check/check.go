// Package check holds the checkers nbimg's tests run on its artifacts:
// readers and validators someone else wrote (squashfs-tools, sqfsdiff,
// GNU cpio, bsdtar, GNU tar, dnsmasq, shellcheck, real Nix), each wrapped
// once so that every package's tests call the same code, in the spirit of
// go-containerregistry's pkg/v1/validate.
//
// Every checker finds its tool with testutil.Tool: when the tool is missing
// the test is skipped with a message naming the Debian package, or fails
// when NBIMG_REQUIRE_TOOLS is set (as in CI). A checker reports what the
// tool printed when it rejects an artifact.
//
// ClosureInfo is the oracle for closureInfo directories: it has real Nix
// build one (closureinfo.nix, the shape of nixpkgs' closureInfo) instead of
// deriving the expected bytes in Go.
//
// The package is for tests only: it takes a testing.TB and is internal to
// nbimg.
package check

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// Run runs the program bin with args, stdin as its input and dir as its
// working directory (the test's when empty), and returns its standard
// output. A failure fails the test with the program's standard error.
func Run(t testing.TB, dir string, stdin []byte, bin string, args ...string) []byte {
	t.Helper()
	out, stderr, err := run(dir, stdin, nil, bin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, stderr, out)
	}
	return out
}

func run(dir string, stdin []byte, env []string, bin string, args ...string) (stdout, stderr []byte, err error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.Bytes(), e.Bytes(), err
}

// lines splits out into its lines, without the final newline.
func lines(out []byte) []string {
	s := strings.TrimSuffix(string(out), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// Shellcheck reports a test error unless shellcheck finds nothing, down to
// style notes, in the script text (named name in the message); shell, when
// not empty, overrides the script's #! line (sh, dash, bash, ksh).
func Shellcheck(t testing.TB, name string, text []byte, shell string) {
	t.Helper()
	bin := testutil.Tool(t, "shellcheck", "shellcheck")
	args := []string{"--severity=style"}
	if shell != "" {
		args = append(args, "--shell="+shell)
	}
	out, stderr, err := run("", text, nil, bin, append(args, "-")...)
	if err != nil {
		t.Errorf("shellcheck %s (as %s): %v\n%s%s", name, shell, err, out, stderr)
	}
}
