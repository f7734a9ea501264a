package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/initrd"
	"github.com/nbimg/nbimg/nixstore"
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
	u := newUI(c)
	o, err := storeImageOptionsFromFlags(c, u)
	if err != nil {
		return err
	}
	name := c.String("name")
	if _, err := initrd.CleanName(name); err != nil {
		return usageErrorf("initrd: --name: %v", err)
	}
	mtime := c.Int64("mtime")
	if mtime < 0 || mtime > 1<<32-1 {
		return usageErrorf("initrd: --mtime %d is outside 0..4294967295 (newc times are 32-bit)", mtime)
	}
	if l, ok := c.Generic("prepend").(*initrdPathList); ok {
		o.Bases = *l
	}
	o.Initrd.Name = name
	o.Initrd.MTime = time.Unix(mtime, 0)
	o.ImageFile = imagePath
	start := time.Now()
	var cl *nixstore.Closure
	if fromClosure {
		if cl, err = loadClosure(c, u, in); err != nil {
			return err
		}
		if len(o.Bases) == 0 && cl.Toplevel != nil {
			o.Bases = []string{cl.HostPath(cl.Toplevel.Initrd)}
		}
		u.Debugf("store image: %s", o.Image.Settings().Description)
	} else {
		u.Progress("appending %s", imagePath)
	}
	out := c.String("output")
	res, err := builder.InitrdFile(c.Context, out, cl, o)
	u.Done()
	if err != nil {
		return err
	}
	printWarnings(u, res.Warnings)
	r := res.Initrd
	u.Debugf("segment: %s at offset %d, %s, image %s as %s",
		o.Initrd.Compression, r.SegmentOffset, humanBytes(r.SegmentSize), humanBytes(r.ImageSize), name)
	kind := "an uncompressed segment"
	if o.Initrd.Compression != initrd.None {
		kind = "a segment compressed with " + o.Initrd.Compression.String()
	}
	what := "the store image"
	if cl != nil {
		what = fmt.Sprintf("a %s store image of %d paths", humanBytes(res.Image.OutputBytes), len(cl.Paths))
	}
	u.Infof("%s: %s (%d base initrd(s), then %s in %s), in %s", out, humanBytes(r.Size), len(o.Bases), what, kind,
		time.Since(start).Round(100*time.Millisecond))
	return nil
}
