package squashfs_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/squashfs"
)

const testBlock = 4096

func TestEdgeTreeAgainstTools(t *testing.T) {
	src := t.TempDir()
	many := 3000
	if testing.Short() {
		many = 600
	}
	edgeTree(t, src, testBlock, many)
	mkfs := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		comp string
		args []string // mksquashfs options for the same image
	}{
		{"zstd", []string{"-comp", "zstd"}},
		{"gzip", []string{"-comp", "gzip"}},
		{"xz", []string{"-comp", "xz"}},
		{"zstd -Xcompression-level 3", []string{"-comp", "zstd", "-Xcompression-level", "3"}},
		{"none", []string{"-noI", "-noId", "-noD", "-noF", "-noX"}},
	} {
		t.Run(strings.Fields(tc.comp)[0]+"-"+strings.Join(strings.Fields(tc.comp)[1:], ""), func(t *testing.T) {
			comp, err := squashfs.ParseCompressor(tc.comp)
			if err != nil {
				t.Fatal(err)
			}
			img, st := dirImage(t, src, squashfs.Options{BlockSize: testBlock, Compressor: comp, MkfsTime: mkfs, Processors: 2})
			if st.Duplicates < 3 || st.Fragments == 0 {
				t.Errorf("stats %+v: want duplicates and fragments", st)
			}
			// The pure-Go reader first: it runs even where a missing
			// unsquashfs or sqfsdiff skips the rest of the case.
			checkDiskfs(t, img, src)
			checkUnsquashfs(t, img, src)
			checkSqfsdiff(t, img, []string{src}, append(tc.args, "-b", "4096", "-mkfs-time", "1700000000")...)
		})
	}
}

func TestOptionsAgainstMksquashfs(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	src := t.TempDir()
	edgeTree(t, src, 8192, 300)
	for _, tc := range []struct {
		name string
		opts squashfs.Options
		args []string
	}{
		{"all-root", squashfs.Options{AllRoot: true}, []string{"-all-root"}},
		{"no-fragments", squashfs.Options{NoFragments: true}, []string{"-no-fragments"}},
		{"no-duplicates", squashfs.Options{NoDuplicates: true}, []string{"-no-duplicates"}},
		{"no-hardlinks", squashfs.Options{NoHardlinks: true}, []string{"-no-hardlinks"}},
		{"all-time", squashfs.Options{AllTime: time.Unix(12345, 0)}, []string{"-all-time", "12345"}},
		{"root-mode", squashfs.Options{RootMode: 0o700}, []string{"-root-mode", "0700"}},
		{"xz-dict", squashfs.Options{BlockSize: 32768, Compressor: squashfs.Compressor{Kind: "xz", DictPercent: 100}},
			[]string{"-b", "32768", "-comp", "xz", "-Xdict-size", "100%"}},
		{"gzip-level", squashfs.Options{Compressor: squashfs.Compressor{Kind: "gzip", Level: 4}},
			[]string{"-comp", "gzip", "-Xcompression-level", "4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.BlockSize == 0 {
				tc.opts.BlockSize = 8192
				tc.args = append(tc.args, "-b", "8192")
			}
			if tc.opts.Compressor.Kind == "" {
				tc.args = append(tc.args, "-comp", "zstd")
			}
			tc.opts.MkfsTime = time.Unix(99, 0)
			img, _ := dirImage(t, src, tc.opts)
			checkSqfsdiff(t, img, []string{src}, append(tc.args, "-mkfs-time", "99")...)
		})
	}
}

func TestSeveralSources(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	testutil.NoError(t, os.WriteFile(filepath.Join(a, "f"), []byte("a"), 0o644))
	os.Mkdir(filepath.Join(b, "d"), 0o755)
	file := filepath.Join(t.TempDir(), "single")
	testutil.NoError(t, os.WriteFile(file, []byte("single file"), 0o600))
	tree, err := squashfs.DirTree(context.Background(), a, b, file)
	if err != nil {
		t.Fatal(err)
	}
	tree.Root.Mtime = 1000
	img, _ := writeImage(t, tree, squashfs.Options{BlockSize: testBlock, MkfsTime: time.Unix(1000, 0), AllRoot: true, AllTime: time.Unix(1000, 0)})
	checkSqfsdiff(t, img, []string{a, b, file}, "-comp", "zstd", "-b", "4096", "-mkfs-time", "1000", "-all-root", "-all-time", "1000")
}
