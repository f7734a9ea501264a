package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/netstore"
)

// stage0File writes the stage-0 program (built from the checkout, as nbimg
// does when none is installed beside it, once for all tests) into the
// test's directory.
func stage0File(t *testing.T) string {
	t.Helper()
	stage0Once.Do(func() {
		dir, err := os.MkdirTemp("", "nbimg-stage0-test-")
		if err != nil {
			stage0Err = err
			return
		}
		defer os.RemoveAll(dir)
		builtStage0, stage0Err = netstore.Stage0(context.Background(), netstore.Stage0Options{GOARCH: "amd64", CacheDir: dir})
	})
	if stage0Err != nil {
		t.Fatal(stage0Err)
	}
	b := builtStage0
	p := filepath.Join(t.TempDir(), "nbimg-stage0")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	stage0Once  sync.Once
	builtStage0 []byte
	stage0Err   error
)

// checkStoreURLTree checks a netboot directory written with --store-url:
// the files, the manifest's store section against the image, the hash area
// against veritysetup, and that the initrd does not carry the image.
func checkStoreURLTree(t *testing.T, dir, url string) builder.Manifest {
	t.Helper()
	m := readManifest(t, dir)
	s := m.Store
	if s == nil {
		t.Fatal("manifest.json has no store section")
	}
	if s.URL != url || s.File != builder.StoreImageName {
		t.Errorf("store section: %+v", s)
	}
	img := filepath.Join(dir, s.File)
	sum, size, err := netstore.FileSHA256(img)
	if err != nil {
		t.Fatal(err)
	}
	if size != s.Size || fmt.Sprintf("%x", sum) != s.SHA256 {
		t.Errorf("nix-store.squashfs is %d bytes sha256 %x; manifest says %d %s", size, sum, s.Size, s.SHA256)
	}
	if out, ok := testutil.VerityVerify(t, img, img, s.VerityRoot, s.DataSize); !ok {
		t.Errorf("veritysetup verify rejects the image:\n%s", out)
	}
	st, err := os.Stat(filepath.Join(dir, "initrd"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.Stat(m.Inputs.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("initrd %d bytes (system's %d + stage 0 %d), image %d bytes", st.Size(), base.Size(), s.InitrdSegment, size)
	if s.InitrdSegment*5 > size || st.Size() >= size {
		t.Errorf("the stage-0 segment (%d bytes) is not a small fraction of the image (%d)", s.InitrdSegment, size)
	}
	if !strings.Contains(ipxeCmdline(t, dir), "rdinit=/nbimg/stage0") {
		t.Errorf("netboot.ipxe does not start stage 0: %s", ipxeCmdline(t, dir))
	}
	return m
}

func TestNetbootStoreURL(t *testing.T) {
	f := testutil.LoadFixture(t)
	for _, bad := range [][]string{{"--store-url", "ftp://x/y"}, {"--stage0", "/nonexistent"}, {"--store-giveup", "5"}, {"--store-url", "nbd://h/x", "--compress", "zstd"}} {
		args := append([]string{"--quiet", "netboot", "-o", filepath.Join(t.TempDir(), "x"), "--toplevel", f.Toplevel, "--closure", f.ClosureDir}, bad...)
		if code, _, _ := runApp(t, args...); code == exitOK {
			t.Errorf("nbimg %v succeeded", bad)
		}
	}
	if testing.Short() {
		return // the builds and the boot below take minutes
	}
	stage0 := stage0File(t)
	port := qemu.FreePort(t)
	url := fmt.Sprintf("nbd://%s:%d/store", qemu.GuestHost, port)
	dir := buildNetboot(t, f, "--store-url", url, "--stage0", stage0)
	checkStoreURLTree(t, dir, url)

	again := buildNetboot(t, f, "--store-url", url, "--stage0", stage0)
	a, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(again, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("two builds with --store-url differ")
	}
	// Boot it: nbd-server serves the directory's image.
	qemu.Require(t)
	qemu.ServeNBDServerOn(t, filepath.Join(dir, builder.StoreImageName), port)
	c := qemu.Config{
		Kernel: filepath.Join(dir, "bzImage"), Initrd: filepath.Join(dir, "initrd"),
		Cmdline: ipxeCmdline(t, dir) + " fixture.check=none",
		Marker:  f.Marker, FailMarkers: []string{f.FailMarker, "nbimg stage 0: FAILED"},
		ExtraArgs: []string{"-nic", "user,model=virtio-net-pci"}, Memory: 256, Timeout: 8 * time.Minute,
	}
	res := qemu.BootT(t, c)
	if !bytes.Contains(res.Console, []byte("is dm-verity over /dev/nbd0")) {
		t.Error("console does not show the dm-verity device")
	}
}

// TestNetbootStoreURLHTTP boots a --store-url http:// directory whose
// server (python3's http.server) starts 30 s after the guest.
func TestNetbootStoreURLHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("QEMU boot")
	}
	qemu.Require(t)
	f := testutil.LoadFixture(t)
	stage0 := stage0File(t)
	srvDir := t.TempDir()
	srv := qemu.NewHTTPServer(t, srvDir, builder.StoreImageName)
	dir := buildNetboot(t, f, "--store-url", srv.GuestURL, "--stage0", stage0, "--store-giveup", "300")
	checkStoreURLTree(t, dir, srv.GuestURL)
	if err := os.Link(filepath.Join(dir, builder.StoreImageName), filepath.Join(srvDir, builder.StoreImageName)); err != nil {
		t.Fatal(err)
	}
	srv.StartHTTP(t, 30*time.Second)
	c := qemu.Config{
		Kernel: filepath.Join(dir, "bzImage"), Initrd: filepath.Join(dir, "initrd"),
		Cmdline: ipxeCmdline(t, dir) + " fixture.check=none",
		Marker:  f.Marker, FailMarkers: []string{f.FailMarker, "nbimg stage 0: FAILED"},
		ExtraArgs: []string{"-nic", "user,model=virtio-net-pci"}, Memory: 512, Timeout: 8 * time.Minute,
	}
	res := qemu.BootT(t, c)
	for _, want := range []string{"waiting for " + srv.GuestURL, "sha256 matches"} {
		if !bytes.Contains(res.Console, []byte(want)) {
			t.Errorf("console lacks %q", want)
		}
	}
}

// TestNetbootStoreURLHTTPS: an https:// store URL needs a CA bundle
// (--store-ca, or the system's own, which the fixture lacks); with one,
// stage 0 downloads the image over https from a loopback server whose
// certificate a throwaway CA issued (reached by the guest at GuestHost)
// and checks its sha256 as for http://.
func TestNetbootStoreURLHTTPS(t *testing.T) {
	f := testutil.LoadFixture(t)
	ca := qemu.NewTestCA(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"--quiet", "netboot", "-o", filepath.Join(t.TempDir(), "x"), "--toplevel", f.Toplevel, "--closure", f.ClosureDir}
	code, _, errOut := runApp(t, append(base, "--store-url", "https://10.0.2.2:1/nix-store.squashfs", "--stage0", "/nonexistent")...)
	if code == exitOK || !strings.Contains(errOut, "--store-ca") {
		t.Errorf("https:// without a CA: exit %d, %q; want a failure naming --store-ca", code, errOut)
	}
	for _, bad := range [][]string{
		{"--store-url", "http://10.0.2.2:1/x", "--store-ca", caFile},
		{"--store-url", "https://10.0.2.2:1/x", "--store-ca", "/nonexistent"},
		{"--store-url", "https://10.0.2.2:1/x", "--store-ca", filepath.Join(f.Toplevel, "init")},
		{"--store-ca", caFile},
	} {
		if code, _, _ := runApp(t, append(base, bad...)...); code == exitOK {
			t.Errorf("nbimg %v succeeded", bad)
		}
	}
	if testing.Short() {
		return // the build and the boot below take a minute
	}
	qemu.Require(t)
	srvDir := t.TempDir()
	srv := qemu.ServeHTTPS(t, srvDir, builder.StoreImageName, ca)
	dir := buildNetboot(t, f, "--store-url", srv.GuestURL, "--stage0", stage0File(t), "--store-ca", caFile)
	m := checkStoreURLTree(t, dir, srv.GuestURL)
	sum := sha256.Sum256(ca.CertPEM)
	if m.Store.CA != caFile || m.Store.CASHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("manifest: ca %q sha256 %q; want %q %x", m.Store.CA, m.Store.CASHA256, caFile, sum)
	}
	if err := os.Link(filepath.Join(dir, builder.StoreImageName), filepath.Join(srvDir, builder.StoreImageName)); err != nil {
		t.Fatal(err)
	}
	c := qemu.Config{
		Kernel: filepath.Join(dir, "bzImage"), Initrd: filepath.Join(dir, "initrd"),
		Cmdline: ipxeCmdline(t, dir) + " fixture.check=none",
		Marker:  f.Marker, FailMarkers: []string{f.FailMarker, "nbimg stage 0: FAILED"},
		ExtraArgs: []string{"-nic", "user,model=virtio-net-pci"}, Memory: 512, Timeout: 8 * time.Minute,
	}
	res := qemu.BootT(t, c)
	if !bytes.Contains(res.Console, []byte("sha256 matches")) {
		t.Error("console lacks the sha256 line")
	}
}
