package squashfs_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/squashfs"
)

// TestKernelMount boots the Debian cloud kernel in QEMU with an initrd
// that mounts images written with each compressor and block sizes at both
// ends, and checks every file's sha256 and the number of entries. The
// kernel is the reader that matters: it is stricter than unsquashfs (the
// zstd window, for one).
func TestKernelMount(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}
	qemu.Require(t)
	kernel, ver := qemu.CloudKernel(t)
	modDir := filepath.Join("/lib/modules", ver, "kernel")
	squashfsKo := testutil.File(t, filepath.Join(modDir, "fs/squashfs/squashfs.ko"), "linux-image-cloud-amd64")
	loopKo := testutil.File(t, filepath.Join(modDir, "drivers/block/loop.ko"), "linux-image-cloud-amd64")
	busybox := testutil.Tool(t, "busybox", "busybox-static")

	src := t.TempDir()
	edgeTree(t, src, testBlock, 1500)
	src1M := t.TempDir()
	edgeTree(t, src1M, 1<<20, 10)
	// A store-image-like tree of units, written from a warm cache.
	unitRoot, unitSrcs := unitSources(t, testBlock)

	files := map[string][]byte{}
	var script strings.Builder
	script.WriteString("#!/bin/busybox sh\n/bin/busybox --install -s /bin\nmount -t proc proc /proc\nmount -t devtmpfs dev /dev\n" +
		"insmod /loop.ko\ninsmod /squashfs.ko\nmkdir -p /mnt\n")
	for i, tc := range []struct {
		src, comp string
		bs        int
		cached    bool
	}{
		{src, "zstd -Xcompression-level 19", testBlock, false},
		{src, "gzip", testBlock, false},
		{src, "xz", testBlock, false},
		{src, "none", testBlock, false},
		{src1M, "zstd", 1 << 20, false},
		{src1M, "xz", 1 << 20, false},
		{unitRoot, "zstd -Xcompression-level 19", testBlock, true},
	} {
		comp, err := squashfs.ParseCompressor(tc.comp)
		if err != nil {
			t.Fatal(err)
		}
		opts := squashfs.Options{BlockSize: tc.bs, Compressor: comp, MkfsTime: time.Unix(1, 0)}
		var img string
		if tc.cached {
			opts.Cache = openCache(t, t.TempDir())
			writeImage(t, unitTree(t, unitSrcs, unitName), opts)
			var st squashfs.Stats
			img, st = writeImage(t, unitTree(t, unitSrcs, unitName), opts)
			if st.CacheHits != st.Units || st.Units == 0 {
				t.Fatalf("the cached image: %d hits of %d units", st.CacheHits, st.Units)
			}
		} else {
			img, _ = dirImage(t, tc.src, opts)
		}
		data, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		files[fmt.Sprintf("img%d", i)] = data
		var sums bytes.Buffer
		snap := snapshot(t, tc.src)
		for p, e := range snap {
			if e.mode.IsRegular() {
				fmt.Fprintf(&sums, "%s  ./%s\n", e.sum, p)
			}
		}
		files[fmt.Sprintf("sums%d", i)] = sums.Bytes()
		fmt.Fprintf(&script, "mount -t squashfs -o loop,ro /img%[1]d /mnt || echo NBIMG-FAIL mount %[2]q\n"+
			"(cd /mnt && sha256sum -c /sums%[1]d >/tmp/out 2>&1) || { grep -v OK /tmp/out | head -5; echo NBIMG-FAIL sums %[2]q; }\n"+
			"n=$(find /mnt | wc -l); [ \"$n\" = %[3]d ] || echo NBIMG-FAIL count %[2]q $n\n"+
			"umount /mnt\necho checked %[2]q\n", i, fmt.Sprintf("%s %d", tc.comp, tc.bs), len(snap))
	}
	script.WriteString("echo NBIMG-KERNEL-OK\npoweroff -f\n")

	initrd := filepath.Join(t.TempDir(), "initrd")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	w := cpio.NewWriter(f)
	add := func(name string, mode cpio.FileMode, data []byte) {
		if err := w.WriteHeader(&cpio.Header{Name: name, Mode: mode, Size: int64(len(data)), Links: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, d := range []string{"bin", "dev", "proc", "tmp"} {
		add(d, cpio.TypeDir|0o755, nil)
	}
	add("bin/busybox", cpio.TypeReg|0o755, read(busybox))
	add("init", cpio.TypeReg|0o755, []byte(script.String()))
	add("loop.ko", cpio.TypeReg|0o644, read(loopKo))
	add("squashfs.ko", cpio.TypeReg|0o644, read(squashfsKo))
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		add(n, cpio.TypeReg|0o644, files[n])
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	res := qemu.BootT(t, qemu.Config{
		Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0 panic=-1 quiet",
		Marker: "NBIMG-KERNEL-OK", FailMarkers: []string{"NBIMG-FAIL"},
		Memory: 1024, Timeout: 5 * time.Minute,
	})
	if n := bytes.Count(res.Console, []byte("checked ")); n < 7 {
		t.Errorf("only %d images checked", n)
	}
}
