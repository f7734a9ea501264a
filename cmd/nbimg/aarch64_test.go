package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
)

// aarch64 end to end: nbimg's outputs for the aarch64 fixture system
// (testdata/fixture, built on this x86 machine from Debian's arm64
// packages) boot in qemu-system-aarch64 on the virt machine (TCG,
// Cortex-A57). Each slow boot runs once: the netboot directory with a full
// check of every store file's sha256; kexec-tree (both systems) and the Pi
// tree with fixture.check=none: their store images and trees come from the
// same writers as on x86, where those boots check every file, and the
// netboot boot has checked this system's files on arm64. The listing of
// every entry is still compared on each boot.

// forEachFixture runs fn as a subtest on each fixture system: x86_64 and
// aarch64 (not with -short: the race run stays fast; the full run covers
// it). A fixture that is not built skips its subtest (or fails it, when
// tools are required).
func forEachFixture(t *testing.T, fn func(t *testing.T, f *testutil.Fixture)) {
	t.Helper()
	for _, fx := range []struct {
		name string
		load func(testing.TB) *testutil.Fixture
	}{{"x86_64", testutil.LoadFixture}, {"aarch64", loadAArch64}} {
		t.Run(fx.name, func(t *testing.T) { fn(t, fx.load(t)) })
	}
}

// loadAArch64 loads the aarch64 fixture, skipping with -short: its tests
// repeat x86 ones on another system, for the full run.
func loadAArch64(t testing.TB) *testutil.Fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("the aarch64 fixture's builds run without -short")
	}
	return testutil.LoadFixtureAArch64(t)
}

// netbootKernel is the kernel's name in f's netboot directory.
func netbootKernel(f *testutil.Fixture) string {
	if f.System == "aarch64-linux" {
		return "Image"
	}
	return "bzImage"
}

func TestAArch64NetbootOutputs(t *testing.T) {
	f := loadAArch64(t)
	dir := buildNetboot(t, f)
	if _, err := os.Stat(filepath.Join(dir, "bzImage")); !os.IsNotExist(err) {
		t.Errorf("an aarch64 netboot directory has bzImage (%v): want Image only", err)
	}
	img, err := os.ReadFile(filepath.Join(dir, "Image"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(f.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img, want) {
		t.Errorf("Image is not the system's kernel %s", f.Kernel)
	}
	script, err := os.ReadFile(filepath.Join(dir, "netboot.ipxe"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "\nkernel --name Image Image init="+f.Init+" ") {
		t.Errorf("netboot.ipxe does not load Image:\n%s", script)
	}
	m := readManifest(t, dir)
	if m.Inputs.Arch != "aarch64" {
		t.Errorf("manifest.json: arch %q, want aarch64", m.Inputs.Arch)
	}
	var names []string
	for _, o := range m.Outputs {
		names = append(names, o.Name)
	}
	if !strings.Contains(" "+strings.Join(names, " ")+" ", " Image ") {
		t.Errorf("manifest.json outputs %q do not list Image", names)
	}

	// kexec-tree keeps NixOS's names on every architecture.
	tree := buildKexec(t, "--toplevel", f.Toplevel, "--closure", f.ClosureDir)
	if _, err := os.Stat(filepath.Join(tree, "bzImage")); err != nil {
		t.Errorf("kexec tree: %v (NixOS names the kernel bzImage there)", err)
	}
	if m := readManifest(t, tree); m.Inputs.Arch != "aarch64" {
		t.Errorf("kexec tree manifest.json: arch %q, want aarch64", m.Inputs.Arch)
	}

	// The Pi 5's firmware loads kernel_2712.img: the Image, unchanged.
	pi := buildPi(t, f, piFirmware(t), "--model", "pi5")
	if k := piRead(t, filepath.Join(pi, "boot", "kernel_2712.img")); !bytes.Equal(k, want) {
		t.Errorf("boot/kernel_2712.img is not the system's Image")
	}
	if m := readManifest(t, pi); m.Inputs.Arch != "aarch64" || m.Pi == nil || m.Pi.Kernel != "kernel_2712.img" {
		t.Errorf("pi manifest.json: arch %q, pi %+v; want aarch64 and kernel_2712.img", m.Inputs.Arch, m.Pi)
	}
}

// TestNetbootKernelOfAnotherArch gives the aarch64 system the x86
// fixture's bzImage: nbimg must refuse it, naming the architectures.
func TestNetbootKernelOfAnotherArch(t *testing.T) {
	arm := loadAArch64(t)
	x86 := testutil.LoadFixture(t)
	dir := filepath.Join(t.TempDir(), "netboot")
	code, _, errOut := runApp(t, "--quiet", "netboot", "-o", dir, "--toplevel", arm.Toplevel,
		"--closure", arm.ClosureDir, "--kernel", x86.Kernel)
	if code == exitOK || !strings.Contains(errOut, "aarch64-linux") || !strings.Contains(errOut, "x86_64") {
		t.Errorf("netboot of an aarch64 system with an x86 kernel: exit %d, %q; want an error naming both", code, errOut)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the refused build left %s (%v)", dir, err)
	}
}

// TestAArch64NetbootBootsDirect boots the netboot directory as a
// netboot.ipxe client would: Image, initrd and the script's command line.
func TestAArch64NetbootBootsDirect(t *testing.T) {
	skipShort(t)
	f := testutil.LoadFixtureAArch64(t)
	qemu.RequireAArch64(t)
	dir := buildNetboot(t, f)
	res := qemu.BootT(t, qemu.AArch64(qemu.Config{
		Kernel:      filepath.Join(dir, "Image"),
		Initrd:      filepath.Join(dir, "initrd"),
		Cmdline:     ipxeCmdline(t, dir),
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
	}))
	if !strings.Contains(res.Line, "check=sha256") {
		t.Errorf("the marker %q does not follow a full store check", res.Line)
	}
}

// TestAArch64KexecTreeBoots is TestKexecTreeBoots on the aarch64 fixture:
// its arm64 kexec (Debian's, with its libraries) loads the tree from
// inside the booted system.
func TestAArch64KexecTreeBoots(t *testing.T) {
	skipShort(t)
	f := testutil.LoadFixtureAArch64(t)
	qemu.RequireAArch64(t)
	if _, err := os.Stat(filepath.Join(f.Toplevel, "sw", "bin", "kexec")); err != nil {
		testutil.SkipOrFail(t, "the aarch64 fixture has no kexec: rebuild it with `make fixture`")
	}
	tree := buildKexec(t, "--toplevel", f.Toplevel, "--closure", f.ClosureDir)
	m := readManifest(t, tree)
	res := qemu.BootT(t, qemu.AArch64(qemu.Config{
		Kernel:      filepath.Join(tree, "bzImage"),
		Initrd:      kexecFirstInitrd(t, tree),
		Cmdline:     m.Inputs.Cmdline + " fixture.check=none fixture.kexec=/kexec fixture.next-check=none",
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
	}))
	checkKexecBoot(t, f, res, "none")
}

// TestAArch64PiNetimageBootsNFS boots the Pi tree of the aarch64 fixture
// over NFSv3 as TestPiNetimageBootsNFS does. QEMU has no Raspberry Pi 3/4/5
// board that boots this way: the virt machine stands in for the Pi's board,
// loading boot/kernel8.img (the arm64 Image, under the Pi's name) with
// boot/initrd and the written cmdline.txt, as the Pi's firmware would.
func TestAArch64PiNetimageBootsNFS(t *testing.T) {
	if testing.Short() {
		t.Skip("boots qemu-system-aarch64 over NFS (about a minute under TCG)")
	}
	f := testutil.LoadFixtureAArch64(t)
	qemu.RequireAArch64(t)
	piBootNFS(t, f, "fixture.root=nfs fixture.check=none", qemu.AArch64)
}
