package serve

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/netstore"
	"github.com/nbimg/nbimg/squashfs"
)

// storeURLTree writes the fixture's netboot directory as `nbimg netboot
// --store-url url` does: bzImage, an initrd of the system's stage 1 and
// stage 0, netboot.ipxe starting stage 0, and nix-store.squashfs with its
// dm-verity hash area. The stage-0 program is built from the checkout, as
// nbimg does when none is installed beside it.
func storeURLTree(t *testing.T, f *testutil.Fixture, url string) string {
	t.Helper()
	ctx := context.Background()
	stage0, err := netstore.Stage0(ctx, netstore.Stage0Options{GOARCH: "amd64", CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	systems, err := builder.LoadSystems(ctx, []string{f.Toplevel}, []string{f.ClosureDir}, "")
	if err != nil {
		t.Fatal(err)
	}
	img := builder.StoreImageOptions()
	if img.Compressor, err = squashfs.ParseCompressor("zstd -Xcompression-level 3"); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "netboot")
	_, err = builder.Netboot(ctx, systems[0], dir, builder.BootOptions{
		InitrdOptions: builder.InitrdOptions{Image: builder.SquashfsImage{Options: img}},
		NetStore:      &builder.NetStore{URL: url, Stage0: stage0},
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBootNBDStore: a BIOS client (SeaBIOS and the iPXE ROM of QEMU's
// virtio-net, whose Linux driver stage 0 loads) boots a netboot directory
// built with --store-url nbd://<serve's address>/nix-store.squashfs from
// nbimg serve alone: proxy DHCP and iPXE over HTTP bring the kernel and
// the small stage-0 initrd; stage 0 gets its address from the LAN's
// dnsmasq, attaches serve's NBD export of the image, checks it through
// dm-verity and hands over to stage 1; the fixture's full content check
// passes.
func TestBootNBDStore(t *testing.T) {
	if testing.Short() {
		t.Skip("QEMU boot: not in -short")
	}
	bin := qemu.Require(t)
	testutil.File(t, "/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu")
	f := testutil.LoadFixture(t)
	lan := qemu.NewLAN(t)
	url := fmt.Sprintf("nbd://%s/%s", lan.ServerIP, StoreImage)
	dir := storeURLTree(t, f, url)
	_, logs := serveLAN(t, lan, Options{Dirs: []string{dir}})
	const mac = "52:54:00:4e:42:04"
	res := qemu.BootT(t, qemu.Config{
		Binary:      lan.Binary(t, bin),
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker, "nbimg stage 0: FAILED"},
		Timeout:     10 * time.Minute,
		Memory:      512,
		ExtraArgs:   lan.Tap(t, "virtio-net-pci", mac),
	})
	if !strings.Contains(res.Line, "check=sha256") {
		t.Errorf("the marker %q does not follow a full store check", res.Line)
	}
	for _, want := range []string{"attached to " + url, "is dm-verity over /dev/nbd0"} {
		if !bytes.Contains(res.Console, []byte(want)) {
			t.Errorf("console lacks %q", want)
		}
	}
	log := logs.String()
	for _, want := range []string{"class=bios ipxe=true", "path=/netboot.ipxe", "path=/bzImage", "path=/initrd", "proto=nbd", "export=" + StoreImage} {
		if !strings.Contains(log, want) {
			t.Errorf("server log lacks %q", want)
		}
	}
}
