package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestArgs(t *testing.T) {
	t.Setenv(AccelEnv, "")
	base := []string{"-machine", "accel=tcg", "-cpu", "max", "-m", "512", "-nographic", "-no-reboot"}
	tests := []struct {
		name string
		c    Config
		want []string
	}{
		{"direct", Config{Kernel: "k", Initrd: "i", Cmdline: "console=ttyS0 init=/x"},
			append(slices.Clone(base), "-kernel", "k", "-initrd", "i", "-append", "console=ttyS0 init=/x", "-nic", "none")},
		{"direct with a network", Config{Kernel: "k", ExtraArgs: []string{"-nic", "user,model=virtio-net-pci"}},
			append(slices.Clone(base), "-kernel", "k", "-nic", "user,model=virtio-net-pci")},
		{"netboot", Config{TFTPDir: "/srv/tftp", BootFile: "netboot.ipxe"},
			append(slices.Clone(base), "-boot", "n", "-netdev", "user,id=n0,tftp=/srv/tftp,bootfile=netboot.ipxe", "-device", "e1000,netdev=n0")},
		{"overrides", Config{Kernel: "k", Accel: "kvm", CPU: "host", Memory: 1024},
			[]string{"-machine", "accel=kvm", "-cpu", "host", "-m", "1024", "-nographic", "-no-reboot", "-kernel", "k", "-nic", "none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.Args()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Args() =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestArgsAccelEnv(t *testing.T) {
	t.Setenv(AccelEnv, "kvm:tcg")
	got, err := (&Config{Kernel: "k"}).Args()
	if err != nil {
		t.Fatal(err)
	}
	if got[1] != "accel=kvm:tcg" {
		t.Errorf("with %s=kvm:tcg, Args() = %q", AccelEnv, got)
	}
}

func TestArgsErrors(t *testing.T) {
	for _, c := range []Config{
		{},
		{Kernel: "k", TFTPDir: "d", BootFile: "f"},
		{TFTPDir: "d"},
		{TFTPDir: "d", BootFile: "f", Initrd: "i"},
		{TFTPDir: "a,b", BootFile: "f"},
	} {
		if _, err := c.Args(); err == nil {
			t.Errorf("Args(%+v) succeeded, want an error", c)
		}
	}
}

func TestTail(t *testing.T) {
	console := []byte("\x1b[2J\x1b[0mSeaBIOS\r\none\r\ntwo\r\nthree\r\n")
	if got, want := Tail(console, 2), "two\nthree"; got != want {
		t.Errorf("Tail = %q, want %q", got, want)
	}
	if got, want := Tail(console, 10), "SeaBIOS\none\ntwo\nthree"; got != want {
		t.Errorf("Tail = %q, want %q", got, want)
	}
}

// fakeQEMU writes a script that stands in for QEMU: it records its pid,
// prints the lines, then runs rest (by exec, so the pid stays QEMU's).
func fakeQEMU(t *testing.T, lines []string, rest string) (bin, pidFile string) {
	t.Helper()
	dir := t.TempDir()
	bin = filepath.Join(dir, "qemu")
	pidFile = filepath.Join(dir, "pid")
	var s strings.Builder
	s.WriteString("#!/bin/sh\necho $$ >" + pidFile + "\n")
	for _, l := range lines {
		s.WriteString("printf '%s\\r\\n' '" + l + "'\n")
	}
	s.WriteString(rest + "\n")
	if err := os.WriteFile(bin, []byte(s.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, pidFile
}

func assertGone(t *testing.T, pidFile string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("fake QEMU (pid %d) still exists after Boot returned (kill 0: %v)", pid, err)
	}
}

func TestBootOutcomes(t *testing.T) {
	old := powerOffGrace
	powerOffGrace = 200 * time.Millisecond
	t.Cleanup(func() { powerOffGrace = old })

	tests := []struct {
		name       string
		lines      []string
		rest       string
		wantErr    error
		wantLine   string
		poweredOff bool
	}{
		{"marker then power off", []string{"booting", "FIXTURE-OK paths=3"}, "exit 0", nil, "FIXTURE-OK paths=3", true},
		{"marker, no power off", []string{"FIXTURE-OK"}, "exec sleep 30", nil, "FIXTURE-OK", false},
		{"panic", []string{"[ 1.0] Kernel panic - not syncing: Attempted to kill init!"}, "exit 0", ErrPanic, "Kernel panic", false},
		{"failure marker", []string{"stage-1: hi", "FIXTURE-FAIL stage-1: no squashfs"}, "exec sleep 30", ErrFailMarker, "FIXTURE-FAIL stage-1: no squashfs", false},
		{"exit without marker", []string{"hello"}, "exit 3", ErrExited, "", false},
		{"timeout", []string{"hello"}, "exec sleep 30", ErrTimeout, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bin, pidFile := fakeQEMU(t, tt.lines, tt.rest)
			var (
				res *Result
				err error
			)
			// A script written a moment ago can fail to start with "text
			// file busy" while a parallel test forks: try again then.
			for try := 0; try < 5; try++ {
				res, err = Boot(t.Context(), Config{
					Binary: bin, Kernel: "k",
					Marker: "FIXTURE-OK", FailMarkers: []string{"FIXTURE-FAIL"},
					Timeout: 1 * time.Second,
				})
				if !errors.Is(err, syscall.ETXTBSY) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			assertGone(t, pidFile)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if res.Line != tt.wantLine || res.PoweredOff != tt.poweredOff {
					t.Errorf("Boot = line %q, powered off %v; want %q, %v", res.Line, res.PoweredOff, tt.wantLine, tt.poweredOff)
				}
				return
			}
			var be *BootError
			if !errors.As(err, &be) || !errors.Is(err, tt.wantErr) {
				t.Fatalf("Boot error = %v, want a *BootError wrapping %v", err, tt.wantErr)
			}
			if !strings.Contains(be.Line, tt.wantLine) {
				t.Errorf("BootError.Line = %q, want it to contain %q", be.Line, tt.wantLine)
			}
			msg := err.Error()
			for _, l := range tt.lines {
				if !strings.Contains(msg, l) {
					t.Errorf("error message lacks console line %q:\n%s", l, msg)
				}
			}
		})
	}
}

func TestBootCanceled(t *testing.T) {
	bin, pidFile := fakeQEMU(t, []string{"hello"}, "exec sleep 30")
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Boot(ctx, Config{Binary: bin, Kernel: "k", Marker: "never", Timeout: time.Minute})
	if !errors.Is(err, ErrCanceled) {
		t.Fatalf("Boot error = %v, want ErrCanceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Boot took %v to return after the context ended", d)
	}
	assertGone(t, pidFile)
}

func TestBootMissingBinary(t *testing.T) {
	_, err := Boot(t.Context(), Config{Binary: filepath.Join(t.TempDir(), "no-qemu"), Kernel: "k"})
	if err == nil || !strings.Contains(err.Error(), "starting") {
		t.Errorf("Boot with a missing binary = %v", err)
	}
}
