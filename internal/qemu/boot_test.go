package qemu

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// These tests boot the fixture system (testdata/fixture) from its
// reference initrd: the stage-1 initrd with a mksquashfs store image
// appended as a cpio segment (made by testdata/fixture/build.sh), until
// nbimg writes its own. Stage 2 checks the whole store and prints the
// marker. The network boots skip the checksums of file contents
// (fixture.check=none): the direct boot has checked the same image, and
// reading every file is most of a boot's time under TCG.

func fixtureForBoot(t *testing.T) *testutil.Fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("boots QEMU (tens of seconds under TCG)")
	}
	f := testutil.LoadFixture(t)
	f.RequireReference(t)
	return f
}

func fixtureConfig(f *testutil.Fixture) Config {
	return Config{Marker: f.Marker, FailMarkers: []string{f.FailMarker}}
}

// tftpTree makes a TFTP root holding links to files, named by the keys,
// and files written from text.
func tftpTree(t *testing.T, links, text map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, target := range links {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range text {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestBootFixtureDirect(t *testing.T) {
	f := fixtureForBoot(t)
	Require(t)
	c := fixtureConfig(f)
	c.Kernel, c.Initrd, c.Cmdline = f.Kernel, f.RefInitrd, f.Cmdline()
	BootT(t, c)
}

func TestBootFixtureIPXE(t *testing.T) {
	f := fixtureForBoot(t)
	RequireNetboot(t)
	// netboot.ipxe as DESIGN.md gives it.
	script := "#!ipxe\n" +
		"kernel --name bzImage bzImage init=" + f.Init + " initrd=initrd " + f.KernelParams + " fixture.check=none ${cmdline}\n" +
		"initrd --name initrd initrd\n" +
		"boot\n"
	c := fixtureConfig(f)
	c.TFTPDir = tftpTree(t,
		map[string]string{"bzImage": f.Kernel, "initrd": f.RefInitrd},
		map[string]string{"netboot.ipxe": script})
	c.BootFile = "netboot.ipxe"
	BootT(t, c)
}

func TestBootFixturePXELinux(t *testing.T) {
	f := fixtureForBoot(t)
	RequireNetboot(t)
	pxelinux := testutil.File(t, "/usr/lib/PXELINUX/pxelinux.0", "pxelinux")
	ldlinux := testutil.File(t, "/usr/lib/syslinux/modules/bios/ldlinux.c32", "syslinux-common")
	cfg := "DEFAULT fixture\n" +
		"LABEL fixture\n" +
		"  KERNEL bzImage\n" +
		"  INITRD initrd\n" +
		"  APPEND init=" + f.Init + " " + f.KernelParams + " fixture.check=none\n"
	c := fixtureConfig(f)
	c.TFTPDir = tftpTree(t,
		map[string]string{"pxelinux.0": pxelinux, "ldlinux.c32": ldlinux,
			"bzImage": f.Kernel, "initrd": f.RefInitrd},
		map[string]string{"pxelinux.cfg/default": cfg})
	c.BootFile = "pxelinux.0"
	BootT(t, c)
}

// TestBootFixtureNoStore boots the stage-1 initrd alone: stage 1 must say
// the store image is missing and power off, not hang.
func TestBootFixtureNoStore(t *testing.T) {
	f := fixtureForBoot(t)
	Require(t)
	c := fixtureConfig(f)
	c.Kernel, c.Initrd, c.Cmdline = f.Kernel, f.Initrd, f.Cmdline()
	_, err := Boot(t.Context(), c)
	var be *BootError
	if !errors.As(err, &be) || !errors.Is(err, ErrFailMarker) || !strings.Contains(be.Line, "nix-store.squashfs") {
		t.Fatalf("booting without a store image: %v; want stage 1's failure about nix-store.squashfs", err)
	}
	t.Logf("failed as expected after %.1fs: %s", be.Elapsed.Seconds(), be.Line)
}

// TestBootFixtureCorrupt flips one byte of a file's data in the store
// image: stage 2 must notice.
func TestBootFixtureCorrupt(t *testing.T) {
	f := fixtureForBoot(t)
	Require(t)
	cpio := testutil.Tool(t, "cpio", "cpio")
	img, err := os.ReadFile(f.RefSquashfs)
	if err != nil {
		t.Fatal(err)
	}
	// random-1MiB is incompressible, so stored as is: find a piece of it.
	var blobs string
	for _, p := range f.StorePaths(t) {
		if strings.HasSuffix(p, "-fixture-blobs") {
			blobs = p
		}
	}
	data, err := os.ReadFile(filepath.Join(blobs, "random-1MiB"))
	if err != nil {
		t.Fatal(err)
	}
	// The kernel image holds the same bytes: change every copy.
	piece := data[500000 : 500000+64]
	n := 0
	for off := 0; ; n++ {
		i := bytes.Index(img[off:], piece)
		if i < 0 {
			break
		}
		img[off+i+10] ^= 0xff
		off += i + len(piece)
	}
	if n == 0 {
		t.Fatalf("random-1MiB's bytes are not stored as is in %s", f.RefSquashfs)
	}

	c := fixtureConfig(f)
	c.Kernel, c.Cmdline = f.Kernel, f.Cmdline()
	c.Initrd = appendStore(t, cpio, f.Initrd, img)
	_, err = Boot(t.Context(), c)
	var be *BootError
	if !errors.As(err, &be) || !errors.Is(err, ErrFailMarker) || !strings.Contains(be.Line, "sha256") {
		t.Fatalf("booting a corrupted store image: %v; want stage 2's sha256 failure", err)
	}
	if !strings.Contains(string(be.Console), "random-1MiB: FAILED") {
		t.Errorf("stage 2 did not name random-1MiB:\n%s", Tail(be.Console, 30))
	}
	t.Logf("failed as expected after %.1fs: %s", be.Elapsed.Seconds(), be.Line)
}

// appendStore returns stage1 with squashfs appended as an uncompressed
// cpio segment holding nix-store.squashfs, at a 4-byte aligned offset.
func appendStore(t *testing.T, cpio, stage1 string, squashfs []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nix-store.squashfs"), squashfs, 0o444); err != nil {
		t.Fatal(err)
	}
	return appendSegment(t, cpio, stage1, dir, "nix-store.squashfs")
}

// appendSegment returns initrd followed, at a 4-byte aligned offset, by an
// uncompressed newc archive of the named entries of dir (made by cpio).
func appendSegment(t *testing.T, cpio, initrd, dir string, names ...string) string {
	t.Helper()
	cmd := exec.Command(cpio, "-o", "-H", "newc", "-R", "0:0", "--reproducible", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
	seg, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio: %v", err)
	}
	b, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	out := filepath.Join(t.TempDir(), "initrd")
	if err := os.WriteFile(out, append(b, seg...), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBootFixtureNFS boots the fixture's stage 1 in its NFS-root mode
// (NFSv4.1; cmd/nbimg's pi-netimage test covers NFSv3) from a tree laid
// out as nbimg's os/<name>/: nix/store with the closure and
// nix-path-registration at the root.
func TestBootFixtureNFS(t *testing.T) {
	f := fixtureForBoot(t)
	Require(t)
	root := t.TempDir()
	testutil.CopyStore(t, root, f.StorePaths(t))
	reg, err := os.ReadFile(filepath.Join(f.ClosureDir, "registration"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "nix-path-registration"), reg, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := ServeNFS(t, root, NFSOptions{Version: 4, Pseudo: "/fixture"})
	c := fixtureConfig(f)
	c.Kernel, c.Initrd = f.Kernel, f.Initrd
	c.Cmdline = f.Cmdline() + " fixture.root=nfs nfsroot=" + srv.NFSRoot() + " ip=dhcp fixture.check=none"
	c.ExtraArgs = []string{"-nic", "user,model=virtio-net-pci"}
	srv.Attach(t, &c)
	res := BootT(t, c)
	if !strings.Contains(string(res.Console), "on the root file system (nfs4)") {
		t.Errorf("stage 2 did not find /nix/store on NFSv4:\n%s", Tail(res.Console, 20))
	}
}

// TestBootFixtureKexec boots the fixture with a kexec tree appended to its
// initrd; stage 2 runs the tree's kexec-boot, and the kernel it starts
// boots the system a second time, which prints the marker. kexec-boot here
// is a minimal hand-written one.
func TestBootFixtureKexec(t *testing.T) {
	f := fixtureForBoot(t)
	Require(t)
	cpio := testutil.Tool(t, "cpio", "cpio")
	if _, err := os.Stat(filepath.Join(f.Toplevel, "sw", "bin", "kexec")); err != nil {
		testutil.SkipOrFail(t, "the fixture has no kexec: install kexec-tools and run `make fixture`")
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "kexec")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{"bzImage": f.Kernel, "initrd.gz": f.RefInitrd} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tree, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script := "#!/bin/sh\nset -eu\ndir=${0%/*}\n" +
		"kexec --load \"$dir/bzImage\" --initrd=\"$dir/initrd.gz\" --command-line='" + f.Cmdline() + " fixture.check=none'\n" +
		"kexec -e\n"
	if err := os.WriteFile(filepath.Join(tree, "kexec-boot"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c := fixtureConfig(f)
	c.Kernel, c.Cmdline = f.Kernel, f.Cmdline()+" fixture.check=none fixture.kexec=/kexec"
	c.Initrd = appendSegment(t, cpio, f.RefInitrd, dir, "kexec", "kexec/bzImage", "kexec/initrd.gz", "kexec/kexec-boot")
	c.Memory = 1024
	res := BootT(t, c)
	if n := strings.Count(string(res.Console), "stage-1 ["); n < 2 || !strings.Contains(string(res.Console), "running /run/fixture-kexec/kexec-boot") {
		t.Errorf("the marker did not come from a second, kexec'ed boot:\n%s", Tail(res.Console, 40))
	}
}
