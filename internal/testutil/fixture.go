package testutil

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FixtureEnv names the variable that points to the fixture system's output
// directory (the Makefile sets it to testdata/fixture/out).
const FixtureEnv = "NBIMG_FIXTURE"

// Fixture is the fixture system built by testdata/fixture/build.sh with
// real Nix: a tiny NixOS-shaped system whose stage 2 checks the booted
// store against checksums recorded at build time and prints Marker.
type Fixture struct {
	// Dir is build.sh's output directory.
	Dir string
	// Toplevel is the system's store path (nixos-system-fixture-<version>).
	Toplevel string
	// ClosureDir is a nixpkgs closureInfo directory of Toplevel:
	// store-paths, registration and total-nar-size, as Nix made them.
	ClosureDir string
	// System is the toplevel's `system` file: x86_64-linux or
	// aarch64-linux.
	System string
	// Kernel is the bzImage, or aarch64's Image (Toplevel/kernel resolved).
	Kernel string
	// Initrd is the stage-1 initrd (Toplevel/initrd resolved). It expects
	// the store image as /nix-store.squashfs, appended as a cpio segment.
	Initrd string
	// Init is Toplevel + "/init", the value of init= on the kernel command
	// line.
	Init string
	// KernelParams is the content of Toplevel/kernel-params.
	KernelParams string
	// Marker is what stage 2 prints when every check passed.
	Marker string
	// FailMarker starts every line stage 1 or stage 2 prints on failure.
	FailMarker string
	// RefSquashfs is the store image made by mksquashfs with NixOS's
	// netboot flags (zstd level 19, 1 MiB blocks); empty when build.sh ran
	// without mksquashfs.
	RefSquashfs string
	// RefInitrd is Initrd with RefSquashfs appended as nix-store.squashfs;
	// bootable as is. Empty when RefSquashfs is.
	RefInitrd string
}

// Cmdline returns the kernel command line that boots the fixture, as
// NixOS's netboot.ipxe builds it: init=<toplevel>/init and the toplevel's
// kernel-params.
func (f *Fixture) Cmdline() string {
	return "init=" + f.Init + " " + f.KernelParams
}

// StorePaths returns the closure's store paths, sorted.
func (f *Fixture) StorePaths(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.ClosureDir, "store-paths"))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return strings.Fields(string(b))
}

// RequireReference skips (or fails, when tools are required) unless the
// reference store image and initrd exist.
func (f *Fixture) RequireReference(t testing.TB) {
	t.Helper()
	if f.RefSquashfs == "" || f.RefInitrd == "" {
		SkipOrFail(t, "fixture in %s has no reference image: install squashfs-tools and run `make fixture`", f.Dir)
	}
}

// LoadFixture returns the fixture system found in $NBIMG_FIXTURE or, when
// that is unset, in testdata/fixture/out of the module that holds the
// working directory. When it has not been built the test is skipped (or
// fails, when NBIMG_REQUIRE_TOOLS is set) with a message saying to run
// `make fixture`.
func LoadFixture(t testing.TB) *Fixture {
	t.Helper()
	return loadFixture(t, FixtureEnv, "out", "x86_64-linux")
}

// loadFixture is LoadFixture for the fixture in $env or
// testdata/fixture/<def>, built for system.
func loadFixture(t testing.TB, env, def, system string) *Fixture {
	t.Helper()
	dir := os.Getenv(env)
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			t.Fatalf("fixture: %v", err)
		}
		dir = filepath.Join(root, "testdata", "fixture", def)
	}
	f, err := ReadFixture(dir)
	if errors.Is(err, os.ErrNotExist) {
		SkipOrFail(t, "fixture system not built in %s: run `make fixture` (needs nix-bin; see testdata/fixture/README.md)", dir)
		return nil
	}
	if err != nil {
		t.Fatalf("fixture: %v (rebuild it with `make fixture`)", err)
	}
	if f.System != system {
		t.Fatalf("fixture in %s is for %s, not %s (%s)", dir, f.System, system, env)
	}
	return f
}

// ReadFixture reads the fixture system in dir, the output directory of
// testdata/fixture/build.sh. An error wrapping os.ErrNotExist means it has
// not been built there.
func ReadFixture(dir string) (*Fixture, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	env, err := readEnvFile(filepath.Join(abs, "fixture.env"))
	if err != nil {
		return nil, err
	}
	f := &Fixture{
		Dir:          abs,
		Toplevel:     env["TOPLEVEL"],
		ClosureDir:   filepath.Join(abs, "closure"),
		Kernel:       env["KERNEL"],
		Initrd:       env["INITRD"],
		Init:         env["INIT"],
		KernelParams: env["KERNEL_PARAMS"],
		Marker:       env["OK_MARKER"],
		FailMarker:   env["FAIL_MARKER"],
	}
	for _, kv := range []struct{ name, val string }{
		{"TOPLEVEL", f.Toplevel}, {"KERNEL", f.Kernel}, {"INITRD", f.Initrd},
		{"INIT", f.Init}, {"KERNEL_PARAMS", f.KernelParams},
		{"OK_MARKER", f.Marker}, {"FAIL_MARKER", f.FailMarker},
	} {
		if kv.val == "" {
			return nil, fmt.Errorf("%s: no %s", filepath.Join(abs, "fixture.env"), kv.name)
		}
	}
	// The toplevel link is the GC root; a mismatch means a build was
	// interrupted after nix-build.
	if link, err := filepath.EvalSymlinks(filepath.Join(abs, "toplevel")); err != nil {
		return nil, fmt.Errorf("fixture toplevel: %w", err)
	} else if link != f.Toplevel {
		return nil, fmt.Errorf("%s/toplevel is %s but fixture.env names %s: the fixture is stale", abs, link, f.Toplevel)
	}
	sys, err := os.ReadFile(filepath.Join(f.Toplevel, "system"))
	if err != nil {
		return nil, fmt.Errorf("fixture toplevel: %w", err)
	}
	f.System = strings.TrimSpace(string(sys))
	for _, p := range []string{f.Kernel, f.Initrd, f.Init,
		filepath.Join(f.ClosureDir, "store-paths"), filepath.Join(f.ClosureDir, "registration")} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("fixture incomplete: %w", err)
		}
	}
	sq := filepath.Join(abs, "reference", "nix-store.squashfs")
	ri := filepath.Join(abs, "reference", "initrd")
	if fileExists(sq) && fileExists(ri) {
		f.RefSquashfs, f.RefInitrd = sq, ri
	}
	return f, nil
}

// readEnvFile reads KEY=VALUE or KEY='VALUE' lines.
func readEnvFile(path string) (map[string]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(fh)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: not KEY=VALUE: %q", path, n, line)
		}
		if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
			v = v[1 : len(v)-1]
		}
		env[k] = v
	}
	return env, sc.Err()
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// moduleRoot walks up from the working directory to the directory holding
// go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
