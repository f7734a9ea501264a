package main

import (
	"bytes"
	"context"
	"strings"
	"syscall"
	"testing"
)

// runApp runs nbimg in-process and returns its exit code and output.
func runApp(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"nbimg"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpListsCommands(t *testing.T) {
	code, out, _ := runApp(t, "--help")
	if code != exitOK {
		t.Fatalf("--help exit %d", code)
	}
	for _, f := range commandConstructors {
		c := f()
		if !strings.Contains(out, c.Name) {
			t.Errorf("--help does not list %q:\n%s", c.Name, out)
		}
		if !strings.Contains(c.Description+c.UsageText, "nbimg "+c.Name) {
			t.Errorf("command %q has no example in its help", c.Name)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runApp(t, "--version")
	if code != exitOK || !strings.HasPrefix(out, "nbimg version ") {
		t.Fatalf("--version: exit %d, output %q", code, out)
	}
}

func TestUnknownCommandIsUsageError(t *testing.T) {
	code, _, errOut := runApp(t, "no-such-command")
	if code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitUsage, errOut)
	}
}

func TestUnknownFlagIsUsageError(t *testing.T) {
	code, _, errOut := runApp(t, "--no-such-flag")
	if code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitUsage, errOut)
	}
	if strings.Count(errOut, "nbimg:") != 1 {
		t.Errorf("want one error line, got %q", errOut)
	}
}

func TestMissingRequiredFlagIsOneLine(t *testing.T) {
	code, out, errOut := runApp(t, "netboot", "--toplevel", "x")
	if code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitUsage, errOut)
	}
	if out != "" || !strings.Contains(errOut, "missing --output") {
		t.Errorf("stdout %q, stderr %q", out, errOut)
	}
}

func TestBadFlagValueIsOneLine(t *testing.T) {
	code, out, errOut := runApp(t, "netboot", "-o", t.TempDir(), "--mkfs-time", "abc")
	if code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitUsage, errOut)
	}
	if out != "" || !strings.Contains(errOut, "mkfs-time") {
		t.Errorf("stdout %q, stderr %q", out, errOut)
	}
}

// TestExitCodeByTypeNotText: a work error whose text holds words urfave
// uses for usage errors is still a work error (exit 1).
func TestExitCodeByTypeNotText(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"invalid value", "Required flag", "flag provided but not defined"} {
		code, _, errOut := runApp(t, "squashfs", "-o", dir+"/out", dir+"/"+name)
		if code != exitFailure || !strings.Contains(errOut, name) {
			t.Errorf("%q: exit %d, stderr %q", name, code, errOut)
		}
	}
}

// TestInterruptSaysSo: a run cancelled by a signal says "interrupted",
// not "context canceled", and exits 130.
func TestInterruptSaysSo(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(interruptedError{syscall.SIGHUP})
	var out, errb bytes.Buffer
	code := run(ctx, []string{"nbimg", "squashfs", "-o", t.TempDir() + "/out", t.TempDir()}, &out, &errb)
	if code != exitSignal || errb.String() != "nbimg: interrupted (hangup)\n" {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}
