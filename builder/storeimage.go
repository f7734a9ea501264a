package builder

import (
	"context"
	"fmt"
	"path"

	"github.com/nbimg/nbimg/nixstore"

	"github.com/nbimg/nbimg/squashfs"
)

// StoreImageComp is the compressor NixOS's netboot image uses.
const StoreImageComp = "zstd -Xcompression-level 19"

// StoreImageOptions returns the squashfs options nixpkgs' make-squashfs.nix
// passes to mksquashfs (-all-root -no-hardlinks -root-mode 0755 -b 1M,
// zstd level 19). Processors, MkfsTime and Progress are left to the caller.
func StoreImageOptions() squashfs.Options {
	comp, err := squashfs.ParseCompressor(StoreImageComp)
	if err != nil {
		panic(err) // a constant
	}
	return squashfs.Options{
		BlockSize:   1 << 20,
		Compressor:  comp,
		AllRoot:     true,
		NoHardlinks: true,
		RootMode:    0o755,
	}
}

// StoreTree returns the tree of a store image: nix-path-registration (the
// closure's registration, mode 0444 and mtime 1 like a store file) and
// each store path under its base name, read from c.HostPath, as
// "mksquashfs nix-path-registration $(cat store-paths) -keep-as-directory"
// lays them out, each store path a squashfs unit (Node.Unit) named by its
// NAR hash. The root has mode 0755 and mtime rootMtime. Nothing is
// read but directory listings: file contents are read when the image is
// written.
func StoreTree(ctx context.Context, c *nixstore.Closure, rootMtime int64) (*squashfs.Tree, error) {
	t := squashfs.NewTree()
	t.Root.Mtime = rootMtime
	reg := c.Registration()
	if err := t.Root.Add(&squashfs.Node{
		Name:    "nix-path-registration",
		Type:    squashfs.TypeFile,
		Perm:    0o444,
		Mtime:   1,
		Size:    int64(len(reg)),
		Content: reg,
	}); err != nil {
		return nil, err
	}
	for _, p := range c.Paths {
		n, err := squashfs.HostNode(ctx, path.Base(p.Path), c.HostPath(p.Path))
		if err != nil {
			return nil, fmt.Errorf("store path %s: %w", p.Path, err)
		}
		// Each store path is a unit of the image, named by its NAR hash:
		// its data is laid out on its own, and Options.Cache can keep it.
		if p.NarHash != "" {
			n.Unit = "nar " + p.NarHash
		}
		if err := t.Root.Add(n); err != nil {
			return nil, fmt.Errorf("store path %s: %w", p.Path, err)
		}
	}
	return t, nil
}
