package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nbimg/nbimg/initrd"
	"github.com/urfave/cli/v2"
)

func init() { registerCommand(initrdCommand) }

func initrdCommand() *cli.Command {
	return &cli.Command{
		Name:  "initrd",
		Usage: "append a store image to an initrd as one more cpio segment",
		Description: "Writes each --prepend initrd unchanged, then a cpio (newc) segment holding\n" +
			"the store image at --name, where NixOS stage 1 mounts it from. The segment\n" +
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
			"       --squashfs store.img --compress zstd",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the initrd to `FILE`", Required: true, TakesFile: true},
			&cli.GenericFlag{Name: "prepend", Usage: "copy the initrd `FILE` first, unchanged (repeat for several, in order)", Value: &initrdPathList{}, TakesFile: true},
			&cli.StringFlag{Name: "squashfs", Usage: "store image `FILE` to append", TakesFile: true},
			&cli.StringFlag{Name: "compress", Usage: "compress the appended segment: none, zstd, gzip or xz", Value: "none"},
			&cli.StringFlag{Name: "name", Usage: "`PATH` of the image inside the initrd", Value: initrd.DefaultName},
			&cli.Int64Flag{Name: "mtime", Usage: "modification time of the segment's entries, `SECONDS` since 1970", Value: initrd.DefaultMTime},
		},
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
	if imagePath == "" {
		return usageErrorf("initrd: give the store image with --squashfs FILE")
	}
	comp, err := initrd.ParseCompression(c.String("compress"))
	if err != nil {
		return usageErrorf("initrd: --compress: %v", err)
	}
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
	image, imageSize, err := open("store image", imagePath)
	if err != nil {
		return err
	}
	if imageSize > initrd.MaxFileSize {
		return fmt.Errorf("store image %s: %w (it is %s)", imagePath, initrd.ErrFileTooLarge, humanBytes(imageSize))
	}

	var res *initrd.Result
	err = initrdWriteAtomic(out, func(f *os.File) error {
		w, err := initrd.NewWriter(f, initrd.Options{
			Name:        name,
			MTime:       time.Unix(mtime, 0),
			Compression: comp,
			TempDir:     filepath.Dir(out),
		})
		if err != nil {
			return err
		}
		for i, b := range bases {
			if _, err := w.AppendBase(initrdCtxReader{c.Context, b}); err != nil {
				w.Abort()
				return fmt.Errorf("base initrd %s: %w", basePaths[i], err)
			}
		}
		u.Progress("appending %s", imagePath)
		if err := w.AppendImage(initrdCtxReader{c.Context, image}); err != nil {
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

// initrdCtxReader stops a copy when the command is interrupted.
type initrdCtxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r initrdCtxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// initrdWriteAtomic writes path through a temporary file in the same
// directory, renamed over path only when write succeeds.
func initrdWriteAtomic(path string, write func(*os.File) error) (err error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("output %s is a directory", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating output: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
