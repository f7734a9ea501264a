package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/initrd"
	"github.com/nbimg/nbimg/squashfs"
	"github.com/urfave/cli/v2"
)

// storeImageFlags are the flags of the commands that build a store image
// and append it to an initrd.
func storeImageFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "comp", Value: builder.StoreImageComp, Usage: "squashfs compressor, in mksquashfs's syntax: \"zstd -Xcompression-level N\", \"xz -Xdict-size 100%\", \"gzip\" or \"none\""},
		&cli.IntFlag{Name: "processors", Usage: "compression workers (default: all CPUs); the output is the same for any number"},
		&cli.Int64Flag{Name: "mkfs-time", Usage: "image time, `SECONDS` since 1970 (default: SOURCE_DATE_EPOCH, else derived from the input)"},
		&cli.StringFlag{Name: "compress", Value: "none", Usage: "compression of the appended initrd segment: none, zstd, gzip or xz"},
	}
}

// mkfsTime resolves the image time: --mkfs-time, then SOURCE_DATE_EPOCH;
// ok is false when neither is set (the time is then derived from the input).
func mkfsTime(c *cli.Context) (t int64, ok bool, err error) {
	if c.IsSet("mkfs-time") {
		t = c.Int64("mkfs-time")
		if t < 0 || t > 1<<32-1 {
			return 0, false, usageErrorf("--mkfs-time %d is outside 0..4294967295", t)
		}
		return t, true, nil
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		t, err := strconv.ParseInt(s, 10, 64)
		if err != nil || t < 0 || t > 1<<32-1 {
			return 0, false, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a time in seconds from 0 to 4294967295", s)
		}
		return t, true, nil
	}
	return 0, false, nil
}

// storeImageOptionsFromFlags builds the image and segment options.
func storeImageOptionsFromFlags(c *cli.Context) (squashfs.Options, initrd.Options, error) {
	comp, err := squashfs.ParseCompressor(c.String("comp"))
	if err != nil {
		return squashfs.Options{}, initrd.Options{}, usageError{fmt.Sprintf("--comp: %v", err)}
	}
	t, haveTime, err := mkfsTime(c)
	if err != nil {
		return squashfs.Options{}, initrd.Options{}, err
	}
	img := builder.StoreImageOptions()
	img.Compressor = comp
	img.Processors = c.Int("processors")
	if haveTime {
		img.MkfsTime = time.Unix(t, 0).UTC()
	}
	segComp, err := initrd.ParseCompression(c.String("compress"))
	if err != nil {
		return squashfs.Options{}, initrd.Options{}, usageError{fmt.Sprintf("--compress: %v", err)}
	}
	// The segment's entries keep mtime 1, as makeInitrdNG writes them.
	return img, initrd.Options{Compression: segComp}, nil
}
