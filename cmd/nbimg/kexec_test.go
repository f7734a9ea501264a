package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/initrd"
	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
)

// buildKexec runs `nbimg kexec-tree` into a new directory.
func buildKexec(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "kexec")
	args = append([]string{"--quiet", "kexec-tree", "-o", dir, "--comp", "zstd -Xcompression-level 3"}, args...)
	code, _, errOut := runApp(t, args...)
	if code != exitOK {
		t.Fatalf("nbimg %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return dir
}

func TestKexecTreeOutputs(t *testing.T) {
	f := testutil.LoadFixture(t)
	dir := buildKexec(t, "--toplevel", f.Toplevel, "--closure", f.ClosureDir, "--tarball", "--cmdline", "boot.shell_on_fail")
	m := readManifest(t, dir)
	var names []string
	for _, o := range m.Outputs {
		names = append(names, o.Name)
		if _, sum := digest(t, filepath.Join(dir, o.Name)); sum != o.SHA256 {
			t.Errorf("manifest sha256 of %s is %s, file has %s", o.Name, o.SHA256, sum)
		}
	}
	if strings.Join(names, " ") != "bzImage initrd.gz kexec-boot kexec.tar.gz" || m.Command != "kexec-tree" {
		t.Errorf("manifest command %q, outputs %v", m.Command, names)
	}
	cmdline := "init=" + f.Init + " " + f.KernelParams + " boot.shell_on_fail"
	if m.Inputs.Cmdline != cmdline {
		t.Errorf("manifest kernel_cmdline %q, want %q", m.Inputs.Cmdline, cmdline)
	}
	kernel := testutil.ReadFile(t, f.Kernel)
	if got := testutil.ReadFile(t, filepath.Join(dir, "bzImage")); !bytes.Equal(got, kernel) {
		t.Error("bzImage differs from the toplevel's kernel")
	}
	// initrd.gz: the base unchanged, then a segment cpio reads.
	base := testutil.ReadFile(t, f.Initrd)
	ird := testutil.ReadFile(t, filepath.Join(dir, "initrd.gz"))
	if !bytes.HasPrefix(ird, base) {
		t.Fatal("initrd.gz does not start with the toplevel's initrd")
	}
	if names := check.CpioList(t, ird[(len(base)+3)&^3:], false); len(names) != 1 || names[0] != "nix-store.squashfs" {
		t.Errorf("cpio -t of the appended segment: %q", names)
	}

	// kexec-boot: executable, the command line, shellcheck-clean.
	script := filepath.Join(dir, "kexec-boot")
	st, err := os.Stat(script)
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("kexec-boot: %v, mode %v", err, st.Mode())
	}
	text := testutil.ReadFile(t, script)
	if !strings.Contains(string(text), "\ncmdline='"+cmdline+"'\n") {
		t.Errorf("kexec-boot does not set the command line %q:\n%s", cmdline, text)
	}
	check.Shellcheck(t, "kexec-boot", text, "")

	// The tarball, as GNU tar and bsdtar list and extract it.
	tarball := filepath.Join(dir, "kexec.tar.gz")
	lines := check.TarList(t, tarball)
	out := strings.Join(lines, "\n")
	var listed []string
	for _, l := range lines {
		fs := strings.Fields(l)
		if len(fs) != 6 || fs[1] != "0/0" {
			t.Errorf("tar -tvzf line %q: want owner 0/0", l)
			continue
		}
		listed = append(listed, fs[0]+" "+fs[5])
	}
	if got := strings.Join(listed, "\n"); got != "drwxr-xr-x kexec/\n-rw-r--r-- kexec/bzImage\n-rw-r--r-- kexec/initrd.gz\n-rwxr-xr-x kexec/kexec-boot" {
		t.Errorf("tar -tvzf:\n%s", out)
	}
	x := t.TempDir()
	check.BsdtarExtract(t, testutil.ReadFile(t, tarball), x)
	for _, n := range []string{"bzImage", "initrd.gz", "kexec-boot"} {
		_, a := digest(t, filepath.Join(dir, n))
		_, b := digest(t, filepath.Join(x, "kexec", n))
		if a != b {
			t.Errorf("kexec/%s in the tarball differs from %s", n, n)
		}
	}
}

// TestKexecTreeReproducible builds twice with different thread counts:
// every file, the tarball included, has the same bytes, and the tarball's
// time is SOURCE_DATE_EPOCH.
func TestKexecTreeReproducible(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	forEachFixture(t, func(t *testing.T, f *testutil.Fixture) {
		a := buildKexec(t, "--toplevel", f.Toplevel, "--closure", f.ClosureDir, "--tarball", "--processors", "1")
		b := buildKexec(t, "--toplevel", f.Toplevel, "--closure", f.ClosureDir, "--tarball", "--processors", "3")
		for _, n := range []string{"bzImage", "initrd.gz", "kexec-boot", "kexec.tar.gz"} {
			_, sa := digest(t, filepath.Join(a, n))
			_, sb := digest(t, filepath.Join(b, n))
			if sa != sb {
				t.Errorf("%s differs between --processors 1 and 3", n)
			}
		}
		sameManifest(t, a, b)
		if out := strings.Join(check.TarList(t, filepath.Join(a, "kexec.tar.gz")), "\n"); strings.Count(out, "2023-11-14 22:13") != 4 {
			t.Errorf("tarball times are not SOURCE_DATE_EPOCH (2023-11-14 22:13):\n%s", out)
		}
	})
}

func TestKexecTreeErrors(t *testing.T) {
	f := testutil.LoadFixture(t)
	tmp := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no toplevel", []string{"--closure", f.ClosureDir}, exitUsage, "--toplevel"},
		{"missing kernel", []string{"--toplevel", f.Toplevel, "--closure", f.ClosureDir, "--kernel", filepath.Join(tmp, "no-kernel")}, exitFailure, "no-kernel"},
		{"bad compressor", []string{"--toplevel", f.Toplevel, "--closure", f.ClosureDir, "--comp", "lzo"}, exitUsage, "lzo"},
		{"arguments", []string{"--toplevel", f.Toplevel, "extra"}, exitUsage, "no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			code, _, errOut := runApp(t, append([]string{"kexec-tree", "-o", filepath.Join(parent, "kexec")}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 1 {
				t.Errorf("exit %d (want %d), stderr %q (want %q in at most two lines)", code, tc.code, errOut, tc.want)
			}
			if left, err := os.ReadDir(parent); err != nil || len(left) != 0 {
				t.Errorf("left behind: %v (%v)", left, err)
			}
		})
	}
}

// TestKexecTreeBoots is the proof that a kexec tree boots: QEMU boots the
// fixture from the tree's own bzImage and initrd.gz, with the tree itself
// appended to the initrd as a cpio segment (written with package initrd)
// under kexec/. With fixture.kexec=/kexec, stage 1 moves the tree to
// /run/fixture-kexec and stage 2, after its checks, runs kexec-boot with
// the argument fixture.tag=kexec (see testdata/fixture/README.md), which
// loads the tree's kernel and initrd.gz with the fixture's kexec-tools and
// jumps into them. The marker must come from that second system: its line
// carries the tag, which only kexec-boot puts on its command line.
func TestKexecTreeBoots(t *testing.T) {
	skipShort(t)
	f := testutil.LoadFixture(t)
	qemu.Require(t)
	if _, err := os.Stat(filepath.Join(f.Toplevel, "sw", "bin", "kexec")); err != nil {
		testutil.SkipOrFail(t, "the fixture system has no kexec: install kexec-tools and rebuild it with `make fixture`")
	}
	// The first system skips the store check; the kexec'ed one, which
	// boots the tree's initrd.gz, checks every file's sha256.
	tree := buildKexec(t, "--toplevel", f.Toplevel, "--closure", f.ClosureDir)
	first := kexecFirstInitrd(t, tree)
	m := readManifest(t, tree)

	res := qemu.BootT(t, qemu.Config{
		Kernel:      filepath.Join(tree, "bzImage"),
		Initrd:      first,
		Cmdline:     m.Inputs.Cmdline + " fixture.check=none fixture.kexec=/kexec",
		Memory:      1024,
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
	})
	checkKexecBoot(t, f, res, "sha256")
}

// kexecFirstInitrd returns the initrd of a boot that kexecs the tree: the
// tree's initrd.gz, NULs to a 4-byte boundary, then an uncompressed newc
// segment holding kexec/ and the tree's files, for fixture.kexec=/kexec.
func kexecFirstInitrd(t *testing.T, tree string) string {
	t.Helper()
	ird, err := os.ReadFile(filepath.Join(tree, "initrd.gz"))
	if err != nil {
		t.Fatal(err)
	}
	for len(ird)%4 != 0 {
		ird = append(ird, 0)
	}
	a, err := initrd.NewArchive(time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.AddDir("kexec", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"bzImage", "initrd.gz", "kexec-boot"} {
		data, err := os.ReadFile(filepath.Join(tree, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.AddBytes("kexec/"+n, 0o755, data); err != nil {
			t.Fatal(err)
		}
	}
	buf := bytes.NewBuffer(ird)
	if _, err := a.WriteTo(buf); err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(t.TempDir(), "initrd")
	if err := os.WriteFile(first, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return first
}

// checkKexecBoot checks that the marker came from the kexec'ed system
// after its store check (fixture.check=check), and that stage 2 ran before
// and after kexec.
func checkKexecBoot(t *testing.T, f *testutil.Fixture, res *qemu.Result, check string) {
	t.Helper()
	if !strings.Contains(res.Line, "tag=kexec") || !strings.Contains(res.Line, "check="+check) {
		t.Errorf("the marker %q is not the kexec'ed system's after its store check (tag=kexec, check=%s)", res.Line, check)
	}
	console := string(res.Console)
	if !strings.Contains(console, "kexec-boot: loading /run/fixture-kexec/bzImage") {
		t.Errorf("the console does not show kexec-boot loading /run/fixture-kexec/bzImage")
	}
	// Stage 2 ran twice: once before kexec, once after.
	if n := strings.Count(console, "toplevel "+f.Toplevel+"\r\n") + strings.Count(console, "toplevel "+f.Toplevel+"\n"); n != 2 {
		t.Errorf("stage 2 started %d times, want 2 (before and after kexec)", n)
	}
}
