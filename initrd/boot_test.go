package initrd

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
)

// TestBootKernelUnpacks boots the Debian cloud kernel in QEMU with an initrd
// made of an uncompressed cpio base, an odd-sized gzip base holding a
// busybox stage 1 (both written by Archive), and the appended image
// segment, once per segment compression. The stage 1 checks the image's
// SHA-256 and a file from each base, so the marker proves that the kernel's
// unpacker read every segment of the concatenation.
func TestBootKernelUnpacks(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU (several seconds per boot under TCG)")
	}
	qemu.Require(t)
	kernel, _ := qemu.CloudKernel(t)
	busybox := testutil.File(t, "/bin/busybox", "busybox-static")
	if f, err := elf.Open(busybox); err != nil {
		t.Fatal(err)
	} else {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				testutil.SkipOrFail(t, "%s is dynamically linked: install the Debian package busybox-static", busybox)
			}
		}
		testutil.NoError(t, f.Close())
	}

	image := make([]byte, 300001)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range image {
		image[i] = byte(rng.Uint32())
	}
	sum := sha256.Sum256(image)

	first, err := NewArchive(time.Time{})
	testutil.NoError(t, err)
	testutil.NoError(t, first.AddBytes("/etc/first-base", 0o644, []byte("microcode goes here\n")))
	bases := [][]byte{mustArchive(t, first), stage1(t, mustReadFile(t, busybox), hex.EncodeToString(sum[:]))}
	if len(bases[1])%4 == 0 {
		t.Fatalf("the gzip base is %d bytes: want an odd size", len(bases[1]))
	}

	for _, c := range []Compression{None, Zstd, Gzip, XZ} {
		t.Run(c.String(), func(t *testing.T) {
			out, res := buildInitrd(t, Options{Compression: c}, image, bases...)
			p := filepath.Join(t.TempDir(), "initrd")
			if err := os.WriteFile(p, out, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("%v segment at offset %d, initrd %d bytes", c, res.SegmentOffset, res.Size)
			qemu.BootT(t, qemu.Config{
				Kernel:      kernel,
				Initrd:      p,
				Cmdline:     "console=ttyS0 panic=-1 loglevel=4",
				Marker:      "NBIMG-INITRD-OK",
				FailMarkers: []string{"NBIMG-INITRD-FAIL", "Initramfs unpacking failed"},
				Timeout:     2 * time.Minute,
			})
		})
	}
}

// stage1 returns a gzip-compressed initrd whose /init checks the image and
// the first base, prints a marker and powers off. Filler files make its
// compressed size odd, so the segment after it needs padding.
func stage1(t *testing.T, busybox []byte, imageSum string) []byte {
	t.Helper()
	a, err := NewArchive(time.Time{})
	testutil.NoError(t, err)
	testutil.NoError(t, a.AddBytes("/bin/busybox", 0o755, busybox))
	testutil.NoError(t, a.AddSymlink("/bin/sh", "busybox"))
	testutil.NoError(t, a.AddDir("/proc", 0o755))
	testutil.NoError(t, a.AddBytes("/init", 0o755, []byte(`#!/bin/sh
export PATH=/bin
busybox mount -t proc proc /proc
sum=$(busybox sha256sum /nix-store.squashfs)
if [ "${sum%% *}" = "`+imageSum+`" ] && [ -f /etc/first-base ]; then
	echo NBIMG-INITRD-OK
else
	echo "NBIMG-INITRD-FAIL: image sum ${sum:-missing}"
	busybox ls -la / /etc
fi
busybox poweroff -f
`)))
	for i := 0; i < 64; i++ {
		if i > 0 {
			testutil.NoError(t, a.AddBytes(fmt.Sprintf("/filler/%d", i), 0o644, []byte(fmt.Sprint(i*7919))))
		}
		var z bytes.Buffer
		zw, err := gzip.NewWriterLevel(&z, gzip.BestCompression)
		testutil.NoError(t, err)
		if _, err := a.WriteTo(zw); err != nil {
			t.Fatal(err)
		}
		testutil.NoError(t, zw.Close())
		if z.Len()%4 == 3 {
			return z.Bytes()
		}
	}
	t.Fatal("no odd-sized stage 1")
	return nil
}
