package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/netstore"
	"github.com/nbimg/nbimg/uki/ukitest"
)

// buildUKI runs `nbimg uki -o out` on f with the tests' compressor and
// extra arguments.
func buildUKI(t *testing.T, f *testutil.Fixture, out string, extra ...string) {
	t.Helper()
	args := append([]string{"--quiet", "uki", "-o", out, "--toplevel", f.Toplevel,
		"--closure", f.ClosureDir, "--comp", "zstd -Xcompression-level 3"}, extra...)
	if code, _, errOut := runApp(t, args...); code != exitOK {
		t.Fatalf("nbimg %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
}

// rootHashParam returns the value of nbimg.roothash= on a command line.
func rootHashParam(line string) string {
	for _, w := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(w, "nbimg.roothash="); ok {
			return v
		}
	}
	return ""
}

func TestUKIStoreURLFlags(t *testing.T) {
	f := testutil.LoadFixture(t)
	ukitest.Stub(t)
	out := filepath.Join(t.TempDir(), "nixos.efi")
	code, _, errOut := runApp(t, "--quiet", "uki", "-o", out, "--toplevel", f.Toplevel, "--closure", f.ClosureDir,
		"--store-image", filepath.Join(t.TempDir(), "img"))
	if code != exitUsage || !strings.Contains(errOut, "--store-url") {
		t.Errorf("--store-image without --store-url: exit %d, %q; want a usage error naming --store-url", code, errOut)
	}
	code, _, errOut = runApp(t, "--quiet", "uki", "-o", out, "--toplevel", f.Toplevel, "--closure", f.ClosureDir,
		"--store-url", "nbd://10.0.2.2/store", "--stage0", "/nonexistent/stage0")
	if code == exitOK || !strings.Contains(errOut, "stage0") {
		t.Errorf("a missing --stage0: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused build left %s (%v)", out, err)
	}
}

// TestUKIStoreURL builds `nbimg uki --store-url nbd://...` signed with the
// encrypted snakeoil key (its passphrase from --sign-key-pass-file), and
// `nbimg netboot --uki` with the same inputs (the passphrase from
// $NBIMG_SIGN_KEY_PASS): the two
// UKIs and store images are the same bytes; sbverify accepts the UKI; its
// .initrd is the tree's small stage-0 initrd; its .cmdline starts stage 0
// and carries the root hash that veritysetup accepts for the image; the
// image lands beside the UKI and nothing else is left there.
func TestUKIStoreURL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the fixture twice (tens of seconds)")
	}
	f := testutil.LoadFixture(t)
	ukitest.Stub(t)
	// The encrypted snakeoil key, its passphrase from the environment
	// for netboot --uki and from a file for uki.
	testutil.File(t, ukitest.SnakeoilKey, "ovmf")
	cert := ukitest.SnakeoilCert
	passFile := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(passFile, []byte(ukitest.SnakeoilPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stage0 := stage0File(t)
	url := fmt.Sprintf("nbd://%s:%d/store", qemu.GuestHost, 10809)
	common := []string{"--store-url", url, "--stage0", stage0, "--sign-key", ukitest.SnakeoilKey, "--sign-cert", cert}

	t.Setenv("NBIMG_SIGN_KEY_PASS", ukitest.SnakeoilPass)
	tree := buildNetboot(t, f, append([]string{"--uki"}, common...)...)
	m := checkStoreURLTree(t, tree, url)
	if err := os.Unsetenv("NBIMG_SIGN_KEY_PASS"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "nixos.efi")
	buildUKI(t, f, out, append(common, "--sign-key-pass-file", passFile)...)
	img := filepath.Join(filepath.Dir(out), builder.StoreImageName)

	for _, pair := range [][2]string{{out, filepath.Join(tree, "nixos.efi")}, {img, filepath.Join(tree, builder.StoreImageName)}} {
		_, a := digest(t, pair[0])
		_, b := digest(t, pair[1])
		if a != b {
			t.Errorf("nbimg uki's %s and netboot --uki's %s differ", filepath.Base(pair[0]), filepath.Base(pair[1]))
		}
	}
	sum, size, err := netstore.FileSHA256(img)
	if err != nil {
		t.Fatal(err)
	}
	if size != m.Store.Size || fmt.Sprintf("%x", sum) != m.Store.SHA256 {
		t.Errorf("%s: %d bytes sha256 %x; the tree's manifest says %d %s", img, size, sum, m.Store.Size, m.Store.SHA256)
	}
	if out, ok := ukitest.Sbverify(t, cert, out); !ok {
		t.Errorf("sbverify refuses the UKI:\n%s", out)
	}
	initrd, err := os.ReadFile(filepath.Join(tree, "initrd"))
	if err != nil {
		t.Fatal(err)
	}
	sec := ukitest.DumpSection(t, out, ".initrd")
	if !bytes.Equal(sec, initrd) {
		t.Error(".initrd is not the tree's stage-0 initrd")
	}
	if int64(len(sec))*2 > size {
		t.Errorf(".initrd is %d bytes, not small beside the %d-byte store image", len(sec), size)
	}
	line := string(ukitest.DumpSection(t, out, ".cmdline"))
	root := rootHashParam(line)
	want := "init=" + f.Init + " " + f.KernelParams + " rdinit=/nbimg/stage0 nbimg.roothash=" + root
	if root == "" || line != want {
		t.Errorf(".cmdline %q, want %q with the image's root hash", line, want)
	}
	if root != m.Store.VerityRoot {
		t.Errorf(".cmdline pins root hash %q, the manifest says %q", root, m.Store.VerityRoot)
	}
	if msg, ok := testutil.VerityVerify(t, img, img, root, m.Store.DataSize); !ok {
		t.Errorf("veritysetup verify rejects the image with the .cmdline's root hash:\n%s", msg)
	}
	ents, err := os.ReadDir(filepath.Dir(out))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "nix-store.squashfs nixos.efi" {
		t.Errorf("beside the UKI: %s; want nix-store.squashfs nixos.efi only", got)
	}
}

// TestUKIStoreURLBoots boots a signed `nbimg uki --store-url nbd://` from
// an ESP under OVMF with Secure Boot enforced (Debian's snakeoil keys):
// the kernel, stage-0 initrd and command line come from the signed UKI,
// stage 0 attaches the store image (written with --store-image, served by
// nbd-server on loopback) through dm-verity with the pinned root hash, and
// the fixture's stage 2 checks every store file's sha256.
func TestUKIStoreURLBoots(t *testing.T) {
	skipShort(t)
	f := testutil.LoadFixture(t)
	qemu.Require(t)
	fw := qemu.RequireOVMF(t, true)
	ukitest.Stub(t)
	key, cert := ukitest.Snakeoil(t)
	port := qemu.FreePort(t)
	url := fmt.Sprintf("nbd://%s:%d/store", qemu.GuestHost, port)
	out := filepath.Join(t.TempDir(), "nixos.efi")
	img := filepath.Join(t.TempDir(), "served", "store.img")
	if err := os.Mkdir(filepath.Dir(img), 0o755); err != nil {
		t.Fatal(err)
	}
	buildUKI(t, f, out, "--store-url", url, "--stage0", stage0File(t), "--store-image", img,
		"--sign-key", key, "--sign-cert", cert)
	if msg, ok := ukitest.Sbverify(t, cert, out); !ok {
		t.Fatalf("sbverify refuses the UKI:\n%s", msg)
	}
	qemu.ServeNBDServerOn(t, img, port)
	res := qemu.BootT(t, qemu.Config{
		Disk: qemu.ESPT(t, out),
		// The firmware boots the ESP; the NIC (without iPXE's ROM) is
		// stage 0's way to the NBD server.
		ExtraArgs:   append(fw.Args(), "-netdev", "user,id=n1", "-device", "virtio-net-pci,netdev=n1,romfile="),
		Memory:      1024,
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker, "nbimg stage 0: FAILED", "Access Denied"},
		Timeout:     12 * time.Minute,
	})
	t.Logf("boot to the marker: %v", res.Elapsed.Round(time.Second))
	for _, want := range []string{"EFI stub: UEFI Secure Boot is enabled", "is dm-verity over /dev/nbd0"} {
		if !bytes.Contains(res.Console, []byte(want)) {
			t.Errorf("console lacks %q:\n%s", want, qemu.Tail(res.Console, 60))
		}
	}
	if !strings.Contains(res.Line, "check=sha256") {
		t.Errorf("the marker %q does not follow a full store check", res.Line)
	}
}
