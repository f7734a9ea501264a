package initrd_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/nbimg/nbimg/initrd"
	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/squashfs"
)

// TestStreamSquashfs writes a squashfs straight into the segment through
// the image view, as nbimg netboot does, and checks that the image in the
// initrd is byte for byte the one written to a plain file, and that
// unsquashfs reads it back out of the extracted segment.
func TestStreamSquashfs(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	testutil.NoError(t, os.MkdirAll(filepath.Join(src, "store", "abc-hello", "bin"), 0o755))
	testutil.NoError(t, os.WriteFile(filepath.Join(src, "store", "abc-hello", "bin", "hello"), bytes.Repeat([]byte("hello\n"), 50000), 0o755))
	testutil.NoError(t, os.WriteFile(filepath.Join(src, "store", "nix-path-registration"), []byte("reg\n"), 0o644))
	tree := func() *squashfs.Tree {
		tr, err := squashfs.DirTree(ctx, filepath.Join(src, "store"))
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	opts := squashfs.Options{Processors: 1, AllRoot: true}

	plain, err := os.Create(filepath.Join(t.TempDir(), "store.squashfs"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := squashfs.Write(ctx, plain, tree(), opts); err != nil {
		t.Fatal(err)
	}
	want := testutil.ReadFile(t, plain.Name())

	for _, c := range []initrd.Compression{initrd.None, initrd.Zstd} {
		t.Run(c.String(), func(t *testing.T) {
			dir := t.TempDir()
			out, err := os.Create(filepath.Join(dir, "initrd"))
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			w, err := initrd.NewWriter(out, initrd.Options{Compression: c, TempDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.AppendBase(bytes.NewReader([]byte("odd"))); err != nil {
				t.Fatal(err)
			}
			iw, err := w.CreateImage()
			if err != nil {
				t.Fatal(err)
			}
			stats, err := squashfs.Write(ctx, iw, tree(), opts)
			if err != nil {
				t.Fatal(err)
			}
			res, err := w.CloseContext(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.ImageSize != int64(len(want)) || stats.OutputBytes != int64(len(want)) {
				t.Fatalf("image %d bytes (stats %d), written to a file %d", res.ImageSize, stats.OutputBytes, len(want))
			}
			all := testutil.ReadFile(t, out.Name())
			seg := all[res.SegmentOffset:]

			x := filepath.Join(dir, "x")
			testutil.NoError(t, os.Mkdir(x, 0o755))
			check.BsdtarExtract(t, seg, x)
			img := filepath.Join(x, "nix-store.squashfs")
			if got := testutil.ReadFile(t, img); !bytes.Equal(got, want) {
				t.Fatalf("image in the initrd (%d bytes) differs from the plain image (%d bytes)", len(got), len(want))
			}
			root := check.UnsquashfsExtract(t, img)
			got, err := os.ReadFile(filepath.Join(root, "abc-hello", "bin", "hello"))
			if err != nil || !bytes.Equal(got, bytes.Repeat([]byte("hello\n"), 50000)) {
				t.Errorf("unsquashfs: hello differs (%v)", err)
			}
		})
	}
}
