package squashfs_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/nbimg/nbimg/squashfs"
)

// An image of an in-memory file and a host directory placed under a name,
// the way a Nix store image puts nix-path-registration next to store paths.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.MkdirAll(filepath.Join(dir, "pkg", "bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "pkg", "bin", "hello"), []byte("#!/bin/sh\necho hello\n"), 0o755)

	tree := squashfs.NewTree()
	reg := []byte("registration\n")
	tree.Root.Add(&squashfs.Node{Name: "nix-path-registration", Type: squashfs.TypeFile,
		Perm: 0o444, Mtime: 1, Size: int64(len(reg)), Content: reg})
	pkg, err := squashfs.HostNode(ctx, "abc-hello-1.0", filepath.Join(dir, "pkg"))
	if err != nil {
		log.Fatal(err)
	}
	tree.Root.Add(pkg)

	comp, err := squashfs.ParseCompressor("zstd -Xcompression-level 19")
	if err != nil {
		log.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "store.squashfs"))
	if err != nil {
		log.Fatal(err)
	}
	defer out.Close()
	st, err := squashfs.Write(ctx, out, tree, squashfs.Options{
		BlockSize:  1 << 20,
		Compressor: comp,
		AllRoot:    true,
		RootMode:   0o755,
		MkfsTime:   time.Unix(1, 0),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.Inodes, "inodes,", st.Files, "files,", st.OutputBytes, "bytes")
	// Output: 5 inodes, 2 files, 4096 bytes
}
