package squashfs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/squashfs"
	"golang.org/x/sys/unix"
)

// idTree returns a tree whose root and files use n distinct uids and gids
// in all (the root is 0:0).
func idTree(n int) *squashfs.Tree {
	tree := squashfs.NewTree()
	for i := 1; i < n; i++ {
		tree.Root.Children = append(tree.Root.Children, &squashfs.Node{
			Name: fmt.Sprintf("f%05d", i), Type: squashfs.TypeFile, Perm: 0o644, UID: uint32(i), Content: []byte{}})
	}
	return tree
}

// TestIDLimit: the id count is 16 bits, so 65,535 distinct ids fit and
// 65,536 are refused with a clear error.
func TestIDLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("65,536 files")
	}
	_, err := squashfs.NewPlan(context.Background(), idTree(1<<16), squashfs.Options{})
	if err == nil || !strings.Contains(err.Error(), "65535 distinct uids and gids") {
		t.Fatalf("65,536 ids: %v, want an error naming the limit", err)
	}
	img, _ := writeImage(t, idTree(1<<16-1), squashfs.Options{MkfsTime: time.Unix(1, 0)})
	if s := readSuper(t, img); s.IDs != 1<<16-1 {
		t.Fatalf("superblock id count %d, want 65535", s.IDs)
	}
	unsq := testutil.Tool(t, "unsquashfs", "squashfs-tools")
	out, err := exec.Command(unsq, "-lln", img).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs: %v\n%.2000s", err, out)
	}
	if !strings.Contains(string(out), " 65534/0 ") {
		t.Errorf("unsquashfs does not list the owner 65534:\n%.2000s", out)
	}
}

// TestRootModeZero: a root mode of 0 is applied when asked for, as
// mksquashfs -root-mode 0 does.
func TestRootModeZero(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(src, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opts squashfs.Options
		want string
	}{
		{squashfs.Options{}, "drwx------"}, // the source's mode
		{squashfs.Options{RootMode: 0o751}, "drwxr-x--x"},
		{squashfs.Options{SetRootMode: true}, "d---------"},
	} {
		tc.opts.MkfsTime = time.Unix(1, 0)
		img, _ := dirImage(t, src, tc.opts)
		unsq := testutil.Tool(t, "unsquashfs", "squashfs-tools")
		out, err := exec.Command(unsq, "-lln", img).CombinedOutput()
		if err != nil {
			t.Fatalf("unsquashfs: %v\n%s", err, out)
		}
		if !strings.HasPrefix(string(out), tc.want) {
			t.Errorf("%+v: root listed as %q, want mode %s", tc.opts, strings.SplitN(string(out), "\n", 2)[0], tc.want)
		}
	}
}

// TestXattrWarning: files with extended attributes are reported once,
// naming the first, and counted.
func TestXattrWarning(t *testing.T) {
	src := t.TempDir()
	for _, n := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(src, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"b", "c"} {
		if err := unix.Setxattr(filepath.Join(src, n), "user.nbimg", []byte("1"), 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) {
				t.Skipf("%s does not keep user xattrs", src)
			}
			t.Fatal(err)
		}
	}
	var warnings []string
	_, st := dirImage(t, src, squashfs.Options{Warn: func(s string) { warnings = append(warnings, s) }})
	if st.XattrFiles != 2 || st.XattrExample != "/b" {
		t.Errorf("stats: %d files with xattrs, first %q; want 2, /b", st.XattrFiles, st.XattrExample)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "/b") || !strings.Contains(warnings[0], "extended attributes") {
		t.Errorf("warnings %q, want one naming /b", warnings)
	}
	_, st = dirImage(t, filepath.Join(src, "a"), squashfs.Options{})
	if st.XattrFiles != 0 {
		t.Errorf("a file without xattrs counted")
	}
}
