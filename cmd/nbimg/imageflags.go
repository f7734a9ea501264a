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
		&cli.StringFlag{Name: "mkfs-time", Usage: "image time as Unix seconds (default: SOURCE_DATE_EPOCH, else derived from the input)"},
		&cli.StringFlag{Name: "compress", Value: "none", Usage: "compression of the appended initrd segment: none, zstd, gzip or xz"},
	}
}

// resolveTime returns the time a flag gives in Unix seconds, else
// SOURCE_DATE_EPOCH, else the zero time (meaning: derived from the input).
func resolveTime(c *cli.Context, flag string) (time.Time, error) {
	v, from := c.String(flag), "--"+flag
	if v == "" {
		v, from = os.Getenv("SOURCE_DATE_EPOCH"), "SOURCE_DATE_EPOCH"
	}
	if v == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1<<32-1 {
		return time.Time{}, usageErrorf("%s=%q: want Unix seconds from 0 to 4294967295", from, v)
	}
	return time.Unix(n, 0).UTC(), nil
}

// storeImageOptionsFromFlags builds the image and segment options.
func storeImageOptionsFromFlags(c *cli.Context) (squashfs.Options, initrd.Options, error) {
	comp, err := squashfs.ParseCompressor(c.String("comp"))
	if err != nil {
		return squashfs.Options{}, initrd.Options{}, usageError{fmt.Sprintf("--comp: %v", err)}
	}
	t, err := resolveTime(c, "mkfs-time")
	if err != nil {
		return squashfs.Options{}, initrd.Options{}, err
	}
	img := builder.StoreImageOptions()
	img.Compressor = comp
	img.Processors = c.Int("processors")
	img.MkfsTime = t
	segComp, err := initrd.ParseCompression(c.String("compress"))
	if err != nil {
		return squashfs.Options{}, initrd.Options{}, usageError{fmt.Sprintf("--compress: %v", err)}
	}
	// The segment's entries keep mtime 1, as makeInitrdNG writes them.
	return img, initrd.Options{Compression: segComp}, nil
}
