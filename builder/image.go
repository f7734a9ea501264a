package builder

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nbimg/nbimg/nixstore"
	"github.com/nbimg/nbimg/squashfs"
)

// ImageWriter writes the store image of a closure. The pipelines take one
// instead of a format's options, so another format (EROFS) or a writer
// with a cache can stand in for SquashfsImage without changing them.
type ImageWriter interface {
	// WriteImage writes the image of c to w, which is empty and positioned
	// at 0, and describes what it wrote.
	WriteImage(ctx context.Context, w io.WriteSeeker, c *nixstore.Closure) (*ImageInfo, error)
	// Settings describes the image settings before anything is written,
	// for manifests and logs.
	Settings() ImageSettings
}

// ImageSettings are the settings that decide an image's bytes.
type ImageSettings struct {
	Format      string // "squashfs"
	Compressor  string // in mksquashfs's syntax
	Encoder     string // which zstd implementation runs; "" for other compressors
	BlockSize   int    // bytes
	Description string // one line for logs, e.g. "squashfs, zstd -Xcompression-level 19 (libzstd 1.5.7)"
}

// ImageInfo describes a written store image.
type ImageInfo struct {
	ImageSettings
	MkfsTime    int64 // the image's time, Unix seconds
	InputBytes  int64 // file bytes that went in
	OutputBytes int64 // image size
	// Squashfs holds the squashfs writer's statistics when Format is
	// "squashfs".
	Squashfs *squashfs.Stats
}

// CacheSummary describes what the rebuild cache did for an image, or is
// "" when no cache was used.
func CacheSummary(st squashfs.Stats) string {
	if st.CacheHits+st.CacheMisses == 0 {
		return ""
	}
	s := fmt.Sprintf("cache: %d of %d store paths reused (%s of files; %s read from the cache), %d compressed, %d entries stored",
		st.CacheHits, st.Units, byteCount(st.CacheReusedBytes), byteCount(st.CacheReadBytes), st.CacheMisses, st.CacheStored)
	if st.CacheDamaged > 0 {
		s += fmt.Sprintf(", %d damaged entries ignored", st.CacheDamaged)
	}
	return s
}

func byteCount(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// SquashfsImage writes a store image as NixOS's make-squashfs.nix does with
// mksquashfs (see StoreImageOptions, StoreTree).
type SquashfsImage struct {
	// Options are the squashfs options, normally StoreImageOptions with
	// the compressor and processors changed. A zero MkfsTime means the
	// newest mtime in the closure (1 in a real store).
	Options squashfs.Options
}

// Settings implements ImageWriter.
func (s SquashfsImage) Settings() ImageSettings {
	o := s.Options
	st := ImageSettings{Format: "squashfs", Compressor: o.Compressor.String(), BlockSize: o.BlockSize}
	if st.BlockSize == 0 {
		st.BlockSize = squashfs.DefaultBlockSize
	}
	if o.Compressor.IsZstd() {
		st.Encoder = o.Compressor.EncoderName()
	}
	st.Description = "squashfs, " + st.Compressor
	if st.Encoder != "" {
		st.Description += " (" + st.Encoder + ")"
	}
	return st
}

// WriteImage implements ImageWriter. The image's root, which the image
// makes up, gets the image's time, as mksquashfs gives it with
// SOURCE_DATE_EPOCH.
func (s SquashfsImage) WriteImage(ctx context.Context, w io.WriteSeeker, c *nixstore.Closure) (*ImageInfo, error) {
	tree, err := StoreTree(ctx, c, 0)
	if err != nil {
		return nil, err
	}
	o := s.Options
	if o.MkfsTime.IsZero() {
		o.MkfsTime = time.Unix(tree.NewestMtime(), 0).UTC()
	}
	tree.Root.Mtime = o.MkfsTime.Unix()
	stats, err := squashfs.Write(ctx, w, tree, o)
	if err != nil {
		return nil, err
	}
	return &ImageInfo{
		ImageSettings: s.Settings(),
		MkfsTime:      o.MkfsTime.Unix(),
		InputBytes:    stats.InputBytes,
		OutputBytes:   stats.OutputBytes,
		Squashfs:      &stats,
	}, nil
}
