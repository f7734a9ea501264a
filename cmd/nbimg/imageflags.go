package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/initrd"
	"github.com/nbimg/nbimg/squashfs"
	"github.com/urfave/cli/v2"
)

// maxProcessors caps --processors: more workers than this only cost memory.
const maxProcessors = 1024

// processorsFlag is --processors, the same for every command.
func processorsFlag(what string) cli.Flag {
	return &cli.IntFlag{Name: "processors", Usage: what + " on `N` threads (1 to " + strconv.Itoa(maxProcessors) + "); the output is the same for any N", DefaultText: "all CPUs"}
}

// processors returns --processors, or the number of CPUs when it is not
// given.
func processors(c *cli.Context) (int, error) {
	if !c.IsSet("processors") {
		return runtime.NumCPU(), nil
	}
	n := c.Int("processors")
	if n < 1 || n > maxProcessors {
		return 0, usageErrorf("--processors %d: want 1 to %d", n, maxProcessors)
	}
	return n, nil
}

// storeImageFlags are the flags of the commands that build a store image
// and append it to an initrd.
func storeImageFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "comp", Value: builder.StoreImageComp, Usage: "squashfs compressor, in mksquashfs's syntax: \"zstd -Xcompression-level N\", \"xz -Xdict-size 100%\", \"gzip\" or \"none\""},
		processorsFlag("compress"),
		&cli.Int64Flag{Name: "mkfs-time", Usage: "image time, `SECONDS` since 1970 (default: SOURCE_DATE_EPOCH, else derived from the input)"},
		&cli.StringFlag{Name: "compress", Value: "none", Usage: "compression of the appended initrd segment: none, zstd, gzip or xz"},
		cacheFlag(),
	}
}

// mkfsTime resolves the image time: --mkfs-time, then SOURCE_DATE_EPOCH;
// nil when neither is set (the time is then derived from the input).
func mkfsTime(c *cli.Context) (*int64, error) {
	if c.IsSet("mkfs-time") {
		t := c.Int64("mkfs-time")
		if t < 0 || t > 1<<32-1 {
			return nil, usageErrorf("--mkfs-time %d is outside 0..4294967295", t)
		}
		return &t, nil
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		t, err := strconv.ParseInt(s, 10, 64)
		if err != nil || t < 0 || t > 1<<32-1 {
			return nil, usageErrorf("SOURCE_DATE_EPOCH=%q is not a time in seconds from 0 to 4294967295", s)
		}
		return &t, nil
	}
	return nil, nil
}

// compressor parses --comp; an empty value is the default spec def, and
// an empty def the squashfs package's default.
func compressor(c *cli.Context, def string) (squashfs.Compressor, error) {
	spec := c.String("comp")
	if spec == "" {
		spec = def
	}
	if spec == "" {
		return squashfs.Compressor{}, nil
	}
	comp, err := squashfs.ParseCompressor(spec)
	if err != nil {
		return squashfs.Compressor{}, usageErrorf("--comp: %v", err)
	}
	return comp, nil
}

// checkCompressor checks --comp against the block size with the squashfs
// writer's own rules (planning an empty tree), so a spec the writer would
// refuse later (xz -Xdict-size 50%) is a usage error before any work.
func checkCompressor(o squashfs.Options) error {
	if _, err := squashfs.NewPlan(context.Background(), squashfs.NewTree(), o); err != nil {
		return usageErrorf("--comp %q: %v", o.Compressor.String(), err)
	}
	return nil
}

// storeImageOptionsFromFlags builds the store image writer and the initrd
// options of the commands declared with storeImageFlags.
func storeImageOptionsFromFlags(c *cli.Context, u *ui) (builder.InitrdOptions, error) {
	comp, err := compressor(c, builder.StoreImageComp)
	if err != nil {
		return builder.InitrdOptions{}, err
	}
	t, err := mkfsTime(c)
	if err != nil {
		return builder.InitrdOptions{}, err
	}
	img := builder.StoreImageOptions()
	img.Compressor = comp
	if img.Processors, err = processors(c); err != nil {
		return builder.InitrdOptions{}, err
	}
	if t != nil {
		img.MkfsTime = time.Unix(*t, 0).UTC()
	}
	if err := checkCompressor(img); err != nil {
		return builder.InitrdOptions{}, err
	}
	img.Progress = imageProgress(u, "image: ")
	if err := useCache(c, u, &img); err != nil {
		return builder.InitrdOptions{}, err
	}
	segComp, err := initrd.ParseCompression(c.String("compress"))
	if err != nil {
		return builder.InitrdOptions{}, usageErrorf("--compress: %v", err)
	}
	// The segment's entries keep mtime 1, as makeInitrdNG writes them.
	return builder.InitrdOptions{
		Image:  builder.SquashfsImage{Options: img},
		Initrd: initrd.Options{Compression: segComp},
		Logf:   u.Debugf,
	}, nil
}

// imageProgress draws the image writer's progress.
func imageProgress(u *ui, prefix string) func(squashfs.Progress) {
	return func(p squashfs.Progress) {
		u.Progress("%s%s / %s, %d / %d files", prefix, humanBytes(p.Bytes), humanBytes(p.TotalBytes), p.Files, p.TotalFiles)
	}
}

// printWarnings prints each warning of a build.
func printWarnings(u *ui, warnings []string) {
	for _, w := range warnings {
		u.Warnf("%s", w)
	}
}

// percent formats part of whole.
func percent(part, whole int64) string {
	return fmt.Sprintf("%.1f%%", 100*float64(part)/float64(max(whole, 1)))
}
