package builder_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/nixstore"
	"github.com/nbimg/nbimg/nixstore/nixstoretest"
	"github.com/nbimg/nbimg/squashfs"
)

// TestStoreTreeLayout checks the root of a store image on a store made by
// hand: nix-path-registration and one entry per store path, by base name.
func TestStoreTreeLayout(t *testing.T) {
	root := t.TempDir()
	a := "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a"
	b := "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b.txt"
	testutil.NoError(t, os.MkdirAll(filepath.Join(root, a, "bin"), 0o755))
	testutil.NoError(t, os.WriteFile(filepath.Join(root, a, "bin", "x"), []byte("x"), 0o555))
	testutil.NoError(t, os.WriteFile(filepath.Join(root, b), []byte("b"), 0o444))
	c := &nixstore.Closure{StoreDir: "/nix/store", StoreRoot: root, Paths: []nixstore.PathInfo{{Path: a}, {Path: b}}}
	tree, err := builder.StoreTree(context.Background(), c, 42)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range tree.Root.Children {
		names = append(names, n.Name)
	}
	if got := strings.Join(names, " "); got != "nix-path-registration aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b.txt" {
		t.Fatalf("root entries %s", got)
	}
	reg := tree.Root.Children[0]
	if !bytes.Equal(reg.Content, c.Registration()) || reg.Perm != 0o444 || reg.Mtime != 1 {
		t.Errorf("registration node %+v", reg)
	}
	if tree.Root.Perm != 0o755 || tree.Root.Mtime != 42 || tree.Root.Children[2].Type != squashfs.TypeFile {
		t.Errorf("root %+v", tree.Root)
	}
	c.Paths = append(c.Paths, nixstore.PathInfo{Path: "/nix/store/cccccccccccccccccccccccccccccccc-missing"})
	if _, err := builder.StoreTree(context.Background(), c, 0); err == nil || !strings.Contains(err.Error(), "-missing") {
		t.Fatalf("missing path: %v", err)
	}
}

// TestStoreImageMatchesMksquashfs builds the image of a real Nix closure and
// compares it with what make-squashfs.nix's mksquashfs call makes of it.
func TestStoreImageMatchesMksquashfs(t *testing.T) {
	s := nixstoretest.NixStore(t)
	ctx := context.Background()
	c, err := nixstore.Load(ctx, nixstore.Input{Toplevel: s.Top})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := builder.StoreTree(ctx, c, 1)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	img := filepath.Join(tmp, "ours.sqfs")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	opts := builder.StoreImageOptions()
	opts.MkfsTime = time.Unix(1, 0)
	if _, err := squashfs.Write(ctx, f, tree, opts); err != nil {
		t.Fatal(err)
	}
	testutil.NoError(t, f.Close())

	reg := filepath.Join(tmp, "nix-path-registration")
	testutil.NoError(t, os.WriteFile(reg, c.Registration(), 0o444))
	testutil.NoError(t, os.Chtimes(reg, time.Unix(1, 0), time.Unix(1, 0)))
	srcs := []string{reg}
	for _, p := range c.Paths {
		srcs = append(srcs, c.HostPath(p.Path))
	}
	ref := check.Mksquashfs(t, check.EnvWith("SOURCE_DATE_EPOCH", "1"), srcs, "-keep-as-directory",
		"-all-root", "-no-hardlinks", "-root-mode", "0755", "-b", "1048576", "-comp", "zstd", "-Xcompression-level", "19")
	check.Sqfsdiff(t, ref, img)
}
