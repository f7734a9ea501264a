package netstore

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
)

// bigDataSize is the data area of TestBootNBDBig's image: past 4 GiB, so
// that the export, the dm-verity data area and every offset into the hash
// area that follows it need more than 32 bits.
const bigDataSize = 4<<30 + 64<<20

// bigImage writes the fixture's reference squashfs followed by
// pseudo-random (incompressible, not sparse) bytes up to bigDataSize, then
// the hash area. A squashfs reader ignores what follows the filesystem, so
// the fixture's stage 1 mounts it as usual; dm-verity hashes and checks all
// of it.
func bigImage(t *testing.T, src string) netImage {
	t.Helper()
	start := time.Now()
	dst := filepath.Join(t.TempDir(), "nix-store.squashfs")
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	n, err := io.Copy(f, in)
	if err != nil {
		t.Fatal(err)
	}
	if pad := (4096 - n%4096) % 4096; pad > 0 {
		if _, err := f.Write(make([]byte, pad)); err != nil {
			t.Fatal(err)
		}
		n += pad
	}
	rng := rand.NewChaCha8([32]byte{'n', 'b', 'i', 'm', 'g'})
	w := bufio.NewWriterSize(f, 4<<20)
	if _, err := io.CopyN(w, rng, bigDataSize-n); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d bytes of data in %.1fs", int64(bigDataSize), time.Since(start).Seconds())
	// A given salt spares AppendVerity its pass over the image to derive
	// one; the image's sha256 is not needed for NBD.
	v, err := AppendVerity(f, SaltFor([]byte("nbimg big image test")))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != v.Size || v.DataSize != bigDataSize {
		t.Fatalf("image is %d bytes (data %d); AppendVerity says %d (data %d)", st.Size(), int64(bigDataSize), v.Size, v.DataSize)
	}
	t.Logf("image %d bytes, hash area at %d, built in %.1fs", v.Size, v.DataSize, time.Since(start).Seconds())
	return netImage{path: dst, size: v.Size, verity: v}
}

// TestBootNBDBig boots the fixture over NBD (nbdkit) from an image of more
// than 4 GiB in a guest with 256 MiB of RAM, through the whole content
// check. The squashfs is the fixture's, followed by 4 GiB of
// incompressible bytes inside the dm-verity data area, so the hash area
// lies past 4 GiB: every block stage 1 and stage 2 read is checked
// against hash blocks that the kernel reads over NBD from offsets beyond
// 2^32 (a 32-bit offset anywhere on the way reads other bytes, and
// dm-verity then fails the read). veritysetup checks the same image first.
//
// Cost: ~4.2 GiB of temporary disk (removed afterwards); the image build
// and veritysetup's pass are ~30 s on a 2-core machine with SHA
// instructions, the boot 1-2 min.
func TestBootNBDBig(t *testing.T) {
	if testing.Short() {
		t.Skip("4 GiB image and a QEMU boot")
	}
	qemu.Require(t)
	testutil.VeritySetup(t)
	testutil.Tool(t, "nbdkit", "nbdkit")
	f := testutil.LoadFixture(t)
	f.RequireReference(t)
	bin := stage0ForTest(t)
	img := bigImage(t, f.RefSquashfs)
	start := time.Now()
	if out, ok := testutil.VerityVerify(t, img.path, img.path, img.verity.Tree.RootHex(), img.verity.DataSize); !ok {
		t.Fatalf("veritysetup verify rejects the image:\n%s", out)
	}
	t.Logf("veritysetup verify: %.1fs", time.Since(start).Seconds())
	srv := qemu.ServeNbdkit(t, img.path)
	ird, _ := netInitrd(t, f, bin, img, srv.GuestURL, 60)
	res := qemu.BootT(t, bootConfig(f, ird, "", 256))
	m := regexp.MustCompile(`attached to \S+ \((\d+) MiB\)`).FindSubmatch(res.Console)
	if m == nil {
		t.Fatal("console lacks the attach line")
	}
	if mib, err := strconv.ParseInt(string(m[1]), 10, 64); err != nil || mib != img.size>>20 {
		t.Errorf("stage 0 attached %s MiB, the image is %d MiB", m[1], img.size>>20)
	}
	if !bytes.Contains(res.Console, []byte("is dm-verity over /dev/nbd0")) {
		t.Error("console lacks the dm-verity line")
	}
}
