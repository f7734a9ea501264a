package qemu

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// These tests boot the fixture system (testdata/fixture) from its
// reference initrd: the stage-1 initrd with a mksquashfs store image
// appended as a cpio segment (made by testdata/fixture/build.sh), until
// nbimg writes its own. Stage 2 checks the whole store and prints the
// marker.

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
		"kernel --name bzImage bzImage init=" + f.Init + " initrd=initrd " + f.KernelParams + " ${cmdline}\n" +
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
		"  APPEND init=" + f.Init + " " + f.KernelParams + "\n"
	c := fixtureConfig(f)
	c.TFTPDir = tftpTree(t,
		map[string]string{"pxelinux.0": pxelinux, "ldlinux.c32": ldlinux,
			"bzImage": f.Kernel, "initrd": f.RefInitrd},
		map[string]string{"pxelinux.cfg/default": cfg})
	c.BootFile = "pxelinux.0"
	BootT(t, c)
}
