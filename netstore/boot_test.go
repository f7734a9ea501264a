package netstore

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/stage0"
)

// stage0ForTest gets the stage-0 program the way nbimg does when it is
// not installed beside nbimg: built from the checkout with the Go
// toolchain, once for all the boots of this package (each build costs
// 10-30 s on a busy machine).
func stage0ForTest(t *testing.T) []byte {
	t.Helper()
	stage0Once.Do(func() {
		dir, err := os.MkdirTemp("", "nbimg-stage0-test-")
		if err != nil {
			stage0Err = err
			return
		}
		defer os.RemoveAll(dir)
		builtStage0, stage0Err = Stage0(context.Background(), Stage0Options{GOARCH: "amd64", CacheDir: dir, Logf: t.Logf})
	})
	if stage0Err != nil {
		t.Fatal(stage0Err)
	}
	return builtStage0
}

var (
	stage0Once  sync.Once
	builtStage0 []byte
	stage0Err   error
)

// netImage is a store image prepared for serving.
type netImage struct {
	path   string
	size   int64
	sha256 string
	verity *Verity
}

// bootSetup is what every boot test here starts with: skipped with
// -short, QEMU and the fixture's reference image required, stage 0 built
// and the reference image prepared (prepareImage: padded to padTo, 0 for
// none, then its hash area).
func bootSetup(t *testing.T, padTo int64) (*testutil.Fixture, []byte, netImage) {
	t.Helper()
	if testing.Short() {
		t.Skip("QEMU boot")
	}
	qemu.Require(t)
	f := testutil.LoadFixture(t)
	f.RequireReference(t)
	return f, stage0ForTest(t), prepareImage(t, f.RefSquashfs, padTo)
}

// prepareImage copies the fixture's reference image, pads it with zeros
// past its filesystem to padTo bytes (0: no padding; a squashfs reader
// ignores what follows the filesystem) and appends the hash area.
func prepareImage(t *testing.T, src string, padTo int64) netImage {
	t.Helper()
	dir := t.TempDir()
	dst := filepath.Join(dir, "nix-store.squashfs")
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, in); err != nil {
		t.Fatal(err)
	}
	if padTo > 0 {
		if err := f.Truncate(padTo); err != nil {
			t.Fatal(err)
		}
	}
	v, err := AppendVerity(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	sum, size, err := FileSHA256(dst)
	if err != nil {
		t.Fatal(err)
	}
	if size != v.Size {
		t.Fatalf("image is %d bytes, AppendVerity says %d", size, v.Size)
	}
	return netImage{path: dst, size: size, sha256: hex.EncodeToString(sum), verity: v}
}

// netInitrd writes the fixture's initrd followed by the stage-0 segment
// for url.
func netInitrd(t *testing.T, f *testutil.Fixture, stage0Bin []byte, img netImage, url string, giveUp int) (string, *SegmentResult) {
	t.Helper()
	cfg := stage0.Config{Version: stage0.ConfigVersion, URL: url, Size: img.size, SHA256: img.sha256, GiveUpSeconds: giveUp}
	if strings.HasPrefix(url, "nbd:") {
		p := img.verity.Params()
		cfg.Verity = &p
	}
	mods, err := filepath.Glob(filepath.Join(f.Toplevel, "kernel-modules", "lib", "modules", "*"))
	if err != nil || len(mods) != 1 {
		t.Fatalf("fixture toplevel has no kernel-modules/lib/modules/<version> (%v): rebuild it with `make fixture`", err)
	}
	base, err := os.ReadFile(f.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.Write(base)
	for buf.Len()%4 != 0 {
		buf.WriteByte(0)
	}
	res, err := WriteSegment(&buf, SegmentOptions{Stage0: stage0Bin, Config: cfg, ModulesDir: mods[0]})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "initrd")
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out, res
}

func bootConfig(f *testutil.Fixture, initrdPath, extra string, memMiB int) qemu.Config {
	return qemu.Config{
		Kernel:      f.Kernel,
		Initrd:      initrdPath,
		Cmdline:     "rdinit=" + stage0.BinaryPath + " " + f.Cmdline() + " " + extra,
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker, "nbimg stage 0: FAILED"},
		Memory:      memMiB,
		ExtraArgs:   []string{"-nic", "user,model=virtio-net-pci"},
		Timeout:     8 * time.Minute,
	}
}

// TestBootNBD boots the fixture with its store over NBD through
// dm-verity, the image (padded past its filesystem to 320 MiB) larger
// than the guest's 256 MiB of RAM, served by nbdkit, with stage 2's full
// content check. (cmd/nbimg's tests boot what `nbimg netboot
// --store-url` writes, over nbd-server and HTTP.)
func TestBootNBD(t *testing.T) {
	f, bin, img := bootSetup(t, 320<<20)
	if out, ok := testutil.VerityVerify(t, img.path, img.path, img.verity.Tree.RootHex(), img.verity.DataSize); !ok {
		t.Fatalf("veritysetup verify rejects the image:\n%s", out)
	}
	for _, c := range []struct {
		name  string
		serve func(testing.TB, string) *qemu.StoreServer
		check string
	}{
		{"nbdkit", qemu.ServeNbdkit, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := c.serve(t, img.path)
			ird, seg := netInitrd(t, f, bin, img, srv.GuestURL, 60)
			st, err := os.Stat(ird)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("initrd %d bytes (stage-0 segment %d, %d modules), image %d bytes", st.Size(), seg.Size, len(seg.Modules), img.size)
			if st.Size()*10 > img.size {
				t.Errorf("initrd of %d bytes is not a small fraction of the %d-byte image", st.Size(), img.size)
			}
			res := qemu.BootT(t, bootConfig(f, ird, c.check, 256))
			for _, want := range []string{"attached to " + srv.GuestURL, "is dm-verity over /dev/nbd0"} {
				if !bytes.Contains(res.Console, []byte(want)) {
					t.Errorf("console lacks %q", want)
				}
			}
		})
	}
}

// tamper flips one bit of the file at off, in place.
func tamper(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// bootFails boots c expecting it to stop before the marker, and returns
// the console.
func bootFails(t *testing.T, c qemu.Config) string {
	t.Helper()
	if os.Getenv(qemu.ConsoleEnv) == "1" {
		c.Console = os.Stderr
	}
	c.Timeout = 4 * time.Minute
	res, err := qemu.Boot(t.Context(), c)
	if err == nil {
		t.Fatalf("the tampered image booted to %q", res.Line)
	}
	be, ok := err.(*qemu.BootError)
	if !ok {
		t.Fatal(err)
	}
	t.Logf("stopped as wanted after %.1fs: %v: %s", be.Elapsed.Seconds(), be.Err, be.Line)
	return string(be.Console)
}

// TestBootNBDTampered serves an image with one flipped bit in the
// filesystem's first block: dm-verity refuses the block, the mount fails,
// and stage 2 never runs.
func TestBootNBDTampered(t *testing.T) {
	f, bin, img := bootSetup(t, 0)
	srv := qemu.ServeNbdkit(t, img.path)
	ird, _ := netInitrd(t, f, bin, img, srv.GuestURL, 60)
	tamper(t, img.path, 1000)
	if _, ok := testutil.VerityVerify(t, img.path, img.path, img.verity.Tree.RootHex(), img.verity.DataSize); ok {
		t.Fatal("veritysetup verify accepts the tampered image")
	}
	console := bootFails(t, bootConfig(f, ird, "", 256))
	if !strings.Contains(console, "device-mapper: verity") || !strings.Contains(console, "is corrupted") {
		t.Errorf("no dm-verity error on the console:\n%s", qemu.Tail([]byte(console), 30))
	}
	if strings.Contains(console, "stage-2") || strings.Contains(console, f.Marker) {
		t.Error("stage 2 ran on a tampered image")
	}
}

// TestBootHTTPTampered serves an image with one flipped bit: stage 0
// refuses it with one clear line and the system's stage 1 never starts.
func TestBootHTTPTampered(t *testing.T) {
	f, bin, img := bootSetup(t, 0)
	ird, _ := netInitrd(t, f, bin, img, "http://"+qemu.GuestHost+":1/placeholder", 60)
	srv := qemu.ServeHTTPLater(t, filepath.Dir(img.path), filepath.Base(img.path), 0)
	tamper(t, img.path, img.size/2)
	c := bootConfig(f, ird, "nbimg.url="+srv.GuestURL, 512)
	console := bootFails(t, c)
	if !strings.Contains(console, "sha256 mismatch") {
		t.Errorf("no sha256 mismatch line:\n%s", qemu.Tail([]byte(console), 30))
	}
	if strings.Contains(console, "stage-1") {
		t.Error("the system's stage 1 started with a tampered image")
	}
}

// TestBootGiveUp points stage 0 at an NBD server that never comes: it
// prints a waiting line every few seconds, gives up after
// nbimg.giveup=15 seconds with a line naming the URL, and the kernel
// panics (PID 1 exits), which panic=N turns into a reboot.
func TestBootGiveUp(t *testing.T) {
	f, bin, img := bootSetup(t, 0)
	url := fmt.Sprintf("nbd://%s:%d/store", qemu.GuestHost, qemu.FreePort(t))
	ird, _ := netInitrd(t, f, bin, img, url, 600)
	c := bootConfig(f, ird, "nbimg.giveup=15", 256)
	c.FailMarkers = nil // wait for the panic
	console := bootFails(t, c)
	for _, want := range []string{"waiting for " + url, "FAILED: gave up on " + url + " after 15s", qemu.PanicMarker} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q:\n%s", want, qemu.Tail([]byte(console), 20))
		}
	}
}

// TestBootNBDServerRestart kills the NBD server (nbdkit) when the
// system's stage 2 starts and starts it again 5 s later, while stage 2
// still reads the store for its content check: the kernel reports the
// dead connection, stage 0's helper connects again through the kernel's
// netlink interface, the reads that waited go on, and the whole check
// passes.
func TestBootNBDServerRestart(t *testing.T) {
	f, bin, img := bootSetup(t, 0)
	srv := qemu.ServeNbdkit(t, img.path)
	ird, _ := netInitrd(t, f, bin, img, srv.GuestURL, 120)
	c := bootConfig(f, ird, "", 256)
	var next io.Writer
	if os.Getenv(qemu.ConsoleEnv) == "1" {
		next = os.Stderr
	}
	restarted := make(chan error, 1)
	c.Console = qemu.OnConsole("stage-2 [", next, func() {
		restarted <- srv.Restart(5 * time.Second)
	})
	res := qemu.BootT(t, c)
	select {
	case err := <-restarted:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal("the boot passed before the server restarted")
	}
	for _, want := range []string{"the kernel re-establishes lost connections", "lost the connection to " + srv.GuestURL, "/dev/nbd0 reconnected to " + srv.GuestURL} {
		if !bytes.Contains(res.Console, []byte(want)) {
			t.Errorf("console lacks %q", want)
		}
	}
}
