package netstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/stage0"
)

// buildStage0 compiles cmd/nbimg-stage0 static, as nbimg does for the
// segment.
func buildStage0(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "stage0")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "github.com/nbimg/nbimg/cmd/nbimg-stage0")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building stage 0: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// netImage is a store image prepared for serving.
type netImage struct {
	path   string
	size   int64
	sha256 string
	verity *Verity
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
// than the guest's 256 MiB of RAM, served by nbdkit with the full
// content check and by nbd-server with the quick one.
func TestBootNBD(t *testing.T) {
	if testing.Short() {
		t.Skip("QEMU boot")
	}
	qemu.Require(t)
	f := testutil.LoadFixture(t)
	f.RequireReference(t)
	bin := buildStage0(t)
	img := prepareImage(t, f.RefSquashfs, 320<<20)
	if out, ok := testutil.VerityVerify(t, img.path, img.path, img.verity.Tree.RootHex(), img.verity.DataSize); !ok {
		t.Fatalf("veritysetup verify rejects the image:\n%s", out)
	}
	for _, c := range []struct {
		name  string
		serve func(testing.TB, string) *qemu.StoreServer
		check string
	}{
		{"nbdkit", qemu.ServeNbdkit, ""},
		{"nbd-server", qemu.ServeNBDServer, "fixture.check=none"},
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

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
