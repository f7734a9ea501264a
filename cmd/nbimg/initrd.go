package main

import (
	"fmt"
	"github.com/nbimg/nbimg/internal/ioctx"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/initrd"
	"github.com/nbimg/nbimg/squashfs"
	"github.com/urfave/cli/v2"
)

func init() { registerCommand(initrdCommand) }

func initrdCommand() *cli.Command {
	return &cli.Command{
		Name:  "initrd",
		Usage: "append a store image to an initrd as one more cpio segment",
		Description: "Writes each --prepend initrd unchanged, then a cpio (newc) segment holding\n" +
			"the store image at --name, where NixOS stage 1 mounts it from. The image is\n" +
			"an existing file (--squashfs) or is built from a closure (--closure and/or\n" +
			"--toplevel, with --comp, --processors, --mkfs-time as in nbimg squashfs) and\n" +
			"then written straight into the segment, never stored twice. With --toplevel\n" +
			"and no --prepend, the base is the system's own initrd. The segment\n" +
			"starts 4-byte aligned, as the kernel needs, and is deterministic: sorted\n" +
			"entries, uid and gid 0, one fixed mtime (--mtime, 1 by default, as\n" +
			"makeInitrdNG), inodes numbered in order, a TRAILER!!! record.\n\n" +
			"The segment is not compressed by default: a squashfs is compressed already,\n" +
			"and the kernel reads an uncompressed segment as is. --compress zstd, gzip or\n" +
			"xz (with a CRC32 check, as the kernel needs) is for loaders or firmware that\n" +
			"want a compressed initrd.\n\n" +
			"A file of 4 GiB or more cannot be stored in newc and fails; an initrd over\n" +
			"2 GiB is written with a warning (many iPXE builds and EFI loaders stop there).\n" +
			"The output is replaced atomically; nothing is left behind on failure.\n\n" +
			"Examples:\n" +
			"   nbimg initrd -o initrd --prepend result/initrd --squashfs nix-store.squashfs\n" +
			"   nbimg --verbose initrd -o initrd.zst --prepend microcode.cpio --prepend stage1.initrd \\\n" +
			"       --squashfs store.img --compress zstd\n" +
			"   nbimg initrd -o initrd --toplevel ./result --comp \"zstd -Xcompression-level 6\"",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the initrd to `FILE`", Required: true, TakesFile: true},
			&cli.GenericFlag{Name: "prepend", Usage: "copy the initrd `FILE` first, unchanged (repeat for several, in order)", Value: &initrdPathList{}, TakesFile: true},
			&cli.StringFlag{Name: "squashfs", Usage: "store image `FILE` to append", TakesFile: true},
			&cli.StringFlag{Name: "name", Usage: "`PATH` of the image inside the initrd", Value: initrd.DefaultName},
			&cli.Int64Flag{Name: "mtime", Usage: "modification time of the segment's entries, `SECONDS` since 1970", Value: initrd.DefaultMTime},
		}, append(closureInputFlags(), storeImageFlags()...)...),
		Action: runInitrd,
	}
}

// initrdPathList collects a repeatable flag without splitting on commas.
type initrdPathList []string

func (l *initrdPathList) Set(v string) error { *l = append(*l, v); return nil }
func (l *initrdPathList) String() string     { return strings.Join(*l, " ") }

func runInitrd(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("initrd: unexpected argument %q (inputs are given with --prepend and --squashfs)", c.Args().First())
	}
	imagePath := c.String("squashfs")
	in := closureInputFromFlags(c)
	fromClosure := in.Closure != "" || in.Toplevel != ""
	switch {
	case imagePath == "" && !fromClosure:
		return usageErrorf("initrd: give the store image with --squashfs FILE, or a closure with --closure/--toplevel")
	case imagePath != "" && fromClosure:
		return usageErrorf("initrd: give --squashfs or --closure/--toplevel, not both")
	}
	for _, f := range []string{"comp", "processors", "mkfs-time", "store-root"} {
		if imagePath != "" && c.IsSet(f) {
			return usageErrorf("initrd: --%s applies only when the image is built from --closure/--toplevel", f)
		}
	}
	img, seg, err := storeImageOptionsFromFlags(c)
	if err != nil {
		return err
	}
	comp := seg.Compression
	name := c.String("name")
	if _, err := initrd.CleanName(name); err != nil {
		return usageErrorf("initrd: --name: %v", err)
	}
	mtime := c.Int64("mtime")
	if mtime < 0 || mtime > 1<<32-1 {
		return usageErrorf("initrd: --mtime %d is outside 0..4294967295 (newc times are 32-bit)", mtime)
	}
	var basePaths []string
	if l, ok := c.Generic("prepend").(*initrdPathList); ok {
		basePaths = *l
	}
	out := c.String("output")
	u := newUI(c)
	start := time.Now()
	var cl *builder.Closure
	if fromClosure {
		if cl, err = builder.Load(c.Context, in); err != nil {
			return err
		}
		if len(basePaths) == 0 && cl.Toplevel != nil {
			basePaths = []string{cl.HostPath(cl.Toplevel.Initrd)}
		}
	}

	// Open every input before the output exists, so a bad one is reported
	// by name and nothing is written.
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	open := func(what, p string) (*os.File, int64, error) {
		f, err := os.Open(p)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", what, err)
		}
		files = append(files, f)
		st, err := f.Stat()
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", what, err)
		}
		if !st.Mode().IsRegular() {
			return nil, 0, fmt.Errorf("%s %s: not a regular file", what, p)
		}
		return f, st.Size(), nil
	}
	var bases []*os.File
	for _, p := range basePaths {
		f, size, err := open("base initrd", p)
		if err != nil {
			return err
		}
		info, err := initrd.Identify(f, size)
		if err != nil {
			return fmt.Errorf("base initrd %s: %w", p, err)
		}
		u.Debugf("base %s: %s, %s", p, info, humanBytes(size))
		for _, s := range info.Segments {
			switch s.Format {
			case initrd.FormatUnknown, initrd.FormatOldCPIO, initrd.FormatLZ4Frame:
				u.Warnf("base initrd %s: %s data at offset %d, which the kernel cannot unpack", p, s.Format, s.Offset)
			}
		}
		bases = append(bases, f)
	}
	segOpts := initrd.Options{
		Name:        name,
		MTime:       time.Unix(mtime, 0),
		Compression: comp,
		TempDir:     filepath.Dir(out),
	}
	if fromClosure {
		return initrdFromClosure(c, u, cl, out, basePaths, img, segOpts, start)
	}
	image, imageSize, err := open("store image", imagePath)
	if err != nil {
		return err
	}
	if imageSize > initrd.MaxFileSize {
		return fmt.Errorf("store image %s: %w (it is %s)", imagePath, initrd.ErrFileTooLarge, humanBytes(imageSize))
	}

	var res *initrd.Result
	err = builder.CreateAtomic(out, func(f *os.File) error {
		w, err := initrd.NewWriter(f, segOpts)
		if err != nil {
			return err
		}
		for i, b := range bases {
			if _, err := w.AppendBase(ioctx.Reader(c.Context, b)); err != nil {
				w.Abort()
				return fmt.Errorf("base initrd %s: %w", basePaths[i], err)
			}
		}
		u.Progress("appending %s", imagePath)
		if err := w.AppendImage(ioctx.Reader(c.Context, image)); err != nil {
			w.Abort()
			return fmt.Errorf("store image %s: %w", imagePath, err)
		}
		res, err = w.CloseContext(c.Context)
		return err
	})
	u.Done()
	if err != nil {
		return err
	}
	for _, warning := range res.Warnings {
		u.Warnf("%s: %s", out, warning)
	}
	u.Debugf("segment: %s at offset %d, %s, image %s as %s",
		comp, res.SegmentOffset, humanBytes(res.SegmentSize), humanBytes(res.ImageSize), name)
	kind := "an uncompressed segment"
	if comp != initrd.None {
		kind = "a segment compressed with " + comp.String()
	}
	u.Infof("%s: %s (%d base initrd(s), then the store image in %s)", out, humanBytes(res.Size), len(bases), kind)
	u.Debugf("written in %s", time.Since(start).Round(time.Millisecond))
	return nil
}

// initrdFromClosure builds the closure's store image straight into the
// initrd segment.
func initrdFromClosure(c *cli.Context, u *ui, cl *builder.Closure, out string, bases []string,
	img squashfs.Options, seg initrd.Options, start time.Time) error {
	u.Debugf("closure: %d store paths; squashfs %s, encoder %s", len(cl.Paths), img.Compressor, img.Compressor.EncoderName())
	img.Progress = func(p squashfs.Progress) {
		u.Progress("image: %s / %s, %d / %d files", humanBytes(p.Bytes), humanBytes(p.TotalBytes), p.Files, p.TotalFiles)
	}
	var res *builder.InitrdResult
	err := builder.CreateAtomic(out, func(f *os.File) error {
		var err error
		res, err = builder.WriteInitrd(c.Context, f, cl, builder.InitrdOptions{Image: img, Initrd: seg, Bases: bases})
		return err
	})
	u.Done()
	if err != nil {
		return err
	}
	for _, warning := range res.Initrd.Warnings {
		u.Warnf("%s: %s", out, warning)
	}
	u.Infof("%s: %s (%d base initrd(s), then a %s store image of %d paths, %s segment), in %s",
		out, humanBytes(res.Initrd.Size), len(bases), humanBytes(res.Image.OutputBytes), len(cl.Paths),
		seg.Compression, time.Since(start).Round(100*time.Millisecond))
	return nil
}
