// Package hostile holds the helpers of nbimg's hostile test group: it
// builds the real binary, makes a tiny Nix store with a NixOS-shaped
// system, runs the binary under conditions a hostile user or machine
// creates (signals, full disks, other users, odd targets), and checks
// what is left on disk.
//
// Limits: it is for tests only; the store it makes is synthetic (a fake
// kernel with a bzImage header, a one-file initrd), enough for every
// command but not for booting.
package hostile

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/nbimg once per test process into a directory every
// user can read, and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nbimg-hostile-bin-")
		if err != nil {
			buildErr = err
			return
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "nbimg")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/nbimg/nbimg/cmd/nbimg").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Dir returns a new empty directory that other users may enter (mode
// 0755, as are the test's temporary parents), removed after the test.
func Dir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// System is a tiny store holding a NixOS-shaped system.
type System struct {
	StoreRoot string // host directory holding nix/store
	Toplevel  string // the system's store path
	Kernel    string // host path of its kernel
	Firmware  string // a stand-in Raspberry Pi firmware directory
}

// StoreArgs are the flags naming the system.
func (s System) StoreArgs() []string {
	return []string{"--store-root", s.StoreRoot, "--toplevel", s.Toplevel}
}

// NewSystem makes a store with a system whose closure holds a file of
// blob random bytes (so that writing takes a moment).
func NewSystem(t testing.TB, blob int) System {
	t.Helper()
	root := Dir(t)
	const (
		kernel = "/nix/store/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a-linux-6.1"
		initrd = "/nix/store/1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b-initrd"
		init   = "/nix/store/2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c-stage-2-init"
		data   = "/nix/store/3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d-blob"
		top    = "/nix/store/4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f-nixos-system-hostile-1.0"
	)
	h := func(p string) string { return filepath.Join(root, p) }
	k := make([]byte, 8192)
	copy(k[0x202:], "HdrS")
	// An initrd: one newc TRAILER!!! record.
	trailer := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0) + "TRAILER!!!\x00"
	for len(trailer)%4 != 0 {
		trailer += "\x00"
	}
	b := make([]byte, blob)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	files := []struct {
		p    string
		data []byte
		mode os.FileMode
	}{
		{kernel + "/bzImage", k, 0o444},
		{initrd + "/initrd", []byte(trailer), 0o444},
		{init, []byte("#!/bin/sh\nexec " + data + "/blob\n"), 0o555},
		{data + "/blob", b, 0o444},
		{data + "/small/a", []byte("a\n"), 0o444},
		{top + "/kernel-params", []byte("console=ttyS0 loglevel=4\n"), 0o444},
		{top + "/nixos-version", []byte("24.11\n"), 0o444},
		{top + "/system", []byte("x86_64-linux\n"), 0o444},
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(h(f.p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(h(f.p), f.data, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		top + "/kernel": kernel + "/bzImage", top + "/initrd": initrd + "/initrd", top + "/init": init,
	} {
		if err := os.Symlink(target, h(link)); err != nil {
			t.Fatal(err)
		}
	}
	fw := filepath.Join(root, "firmware")
	for _, f := range []string{"bootcode.bin", "start.elf", "fixup.dat", "start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb", "overlays/x.dtbo"} {
		p := filepath.Join(fw, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("stand-in "+f), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	return System{StoreRoot: root, Toplevel: top, Kernel: h(kernel + "/bzImage"), Firmware: fw}
}

// Result is how a run ended.
type Result struct {
	Code           int
	Signal         syscall.Signal // the signal that killed it, 0 if none
	Stdout, Stderr string
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d (signal %d), stderr %q", r.Code, r.Signal, r.Stderr)
}

// Start starts cmd with its output captured; the function it returns
// waits for the end.
func Start(t testing.TB, cmd *exec.Cmd) func() Result {
	wait, _ := StartDone(t, cmd)
	return wait
}

// StartDone is Start with a channel closed when the process has ended.
func StartDone(t testing.TB, cmd *exec.Cmd) (func() Result, <-chan struct{}) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var err error
	go func() {
		err = cmd.Wait()
		close(done)
	}()
	return func() Result {
		<-done
		r := Result{Stdout: out.String(), Stderr: errb.String()}
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			r.Code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				r.Signal = ws.Signal()
			}
		default:
			t.Fatal(err)
		}
		return r
	}, done
}

// Run runs cmd to its end.
func Run(t testing.TB, cmd *exec.Cmd) Result {
	t.Helper()
	return Start(t, cmd)()
}

// ErrorLines returns the lines of stderr that are not warnings or
// information: what a failed run says about its failure.
func ErrorLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(stderr, "\n"), "\n") {
		if strings.HasPrefix(l, "nbimg: ") {
			out = append(out, l)
		}
	}
	return out
}

// CheckFailure reports an error unless r exited with code and said so in
// exactly one "nbimg: " line containing want, naming no temporary path
// and not "context canceled".
func CheckFailure(t testing.TB, what string, r Result, code int, want string) {
	t.Helper()
	lines := ErrorLines(r.Stderr)
	switch {
	case r.Code != code:
		t.Errorf("%s: %v, want exit %d", what, r, code)
	case len(lines) != 1:
		t.Errorf("%s: want one error line, got %q", what, r.Stderr)
	case !strings.Contains(lines[0], want):
		t.Errorf("%s: error %q does not say %q", what, lines[0], want)
	case strings.Contains(lines[0], ".tmp-") || strings.Contains(lines[0], "context canceled"):
		t.Errorf("%s: error %q names a temporary or says context canceled", what, lines[0])
	}
}

// Listing describes every entry under root (type, mode, size, content
// hash or link target), not times: two listings are equal when the trees
// hold the same things. A missing root is an empty listing.
func Listing(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		desc := info.Mode().String()
		switch {
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			desc += " " + hex.EncodeToString(sum[:8])
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case info.Mode()&fs.ModeDevice != 0:
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				desc += fmt.Sprintf(" dev %d", st.Rdev)
			}
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Diff describes how two listings differ, "" when they are equal.
func Diff(a, b map[string]string) string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, "- "+k+" "+v)
		} else if v != w {
			d = append(d, "~ "+k+" "+v+" => "+w)
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			d = append(d, "+ "+k+" "+v)
		}
	}
	sort.Strings(d)
	return strings.Join(d, "\n")
}

// Temporaries lists what nbimg's atomic writes leave when they are not
// cleaned up (".NAME.tmp-*" files and trees, and ".old" trees) directly in
// dir.
func Temporaries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") || strings.HasSuffix(e.Name(), ".old") {
			out = append(out, e.Name())
		}
	}
	return out
}

// WaitTemporary waits until a temporary of an atomic write appears in dir
// (the work is under way) or done is closed, for at most a minute.
func WaitTemporary(dir string, done <-chan struct{}) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return
		default:
		}
		if ents, err := os.ReadDir(dir); err == nil {
			for _, e := range ents {
				if strings.Contains(e.Name(), ".tmp-") {
					return
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
}
