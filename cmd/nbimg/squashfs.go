package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/squashfs"
	"github.com/urfave/cli/v2"
)

func init() { registerCommand(squashfsCommand) }

func squashfsCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the image to `FILE`", Required: true, TakesFile: true},
		&cli.StringFlag{Name: "comp", Usage: "compressor `SPEC` in mksquashfs syntax: \"zstd [-Xcompression-level 1..22]\", \"xz [-Xdict-size 100%]\", \"gzip [-Xcompression-level 1..9]\" or \"none\" (default \"zstd\", level 15; with --closure/--toplevel \"" + builder.StoreImageComp + "\")"},
		&cli.StringFlag{Name: "block-size", Usage: "data block `SIZE`, a power of two from 4K to 1M (default 128K; 1M with --closure/--toplevel)"},
		processorsFlag("compress"),
		&cli.Int64Flag{Name: "mkfs-time", Usage: "superblock time, `SECONDS` since 1970", DefaultText: "$SOURCE_DATE_EPOCH, else the newest mtime of the input"},
		&cli.BoolFlag{Name: "all-root", Usage: "make every file owned by root (uid and gid 0)"},
		&cli.Int64Flag{Name: "all-time", Usage: "set every file's mtime to `SECONDS` since 1970", DefaultText: "keep mtimes"},
		&cli.StringFlag{Name: "root-mode", Usage: "permissions of the root directory, octal `MODE` such as 0755"},
		&cli.BoolFlag{Name: "no-fragments", Usage: "store small files and tails in blocks of their own"},
		&cli.BoolFlag{Name: "no-duplicates", Usage: "do not look for identical files: store each in full"},
		&cli.BoolFlag{Name: "no-hardlinks", Usage: "store each hard link as a file of its own"},
		cacheFlag(),
	}
	return &cli.Command{
		Name:      "squashfs",
		Usage:     "write a reproducible SquashFS image of directories or of a Nix closure",
		ArgsUsage: "[DIR...]",
		Description: "With DIR arguments it behaves like \"mksquashfs DIR... OUT\": one DIR puts its\n" +
			"contents at the root, several put each under its base name. Owners, modes\n" +
			"and mtimes are kept unless --all-root / --all-time say otherwise.\n\n" +
			"With --closure or --toplevel it writes the Nix store image NixOS netboots\n" +
			"(nixpkgs' make-squashfs.nix): nix-path-registration plus one entry per store\n" +
			"path, all owned by root, no hard links, root mode 0755, 1 MiB blocks,\n" +
			"zstd level 19 unless --comp says otherwise.\n\n" +
			"The image is the same, byte for byte, for any --processors. The superblock\n" +
			"time is --mkfs-time, else $SOURCE_DATE_EPOCH, else the newest mtime of the\n" +
			"input; the clock is never read. $SOURCE_DATE_EPOCH does not change file\n" +
			"times (use --all-time). Extended attributes are not stored. \"none\" is\n" +
			"mksquashfs's -noI -noId -noD -noF -noX. The output is replaced atomically;\n" +
			"nothing is left behind on failure. --verbose names the zstd encoder.\n\n" +
			"Examples:\n" +
			"   nbimg squashfs -o root.sqfs ./rootfs\n" +
			"   nbimg squashfs -o tools.sqfs --comp \"xz -Xdict-size 100%\" --all-root bin lib\n" +
			"   nbimg squashfs -o nix-store.squashfs --closure result-closure-info\n" +
			"   SOURCE_DATE_EPOCH=1 nbimg squashfs -o store.img --toplevel ./result --comp \"zstd -Xcompression-level 6\"",
		Flags:  append(flags, closureInputFlags()...),
		Action: runSquashfs,
	}
}

func runSquashfs(c *cli.Context) error {
	in := closureInputFromFlags(c)
	closureMode := in.Closure != "" || in.Toplevel != ""
	switch {
	case closureMode && c.NArg() > 0:
		return usageErrorf("squashfs: give DIR arguments or --closure/--toplevel, not both")
	case !closureMode && c.NArg() == 0:
		return usageErrorf("squashfs: nothing to write: give DIR arguments or --closure/--toplevel")
	case !closureMode && in.StoreRoot != "":
		return usageErrorf("squashfs: --store-root needs --closure or --toplevel")
	}
	opts := squashfs.Options{}
	def := "" // the squashfs package's default, zstd at level 15
	if closureMode {
		opts = builder.StoreImageOptions()
		def = builder.StoreImageComp
	}
	var err error
	if opts.Compressor, err = compressor(c, def); err != nil {
		return err
	}
	if s := c.String("block-size"); s != "" {
		n, err := squashfsParseSize(s)
		if err != nil || n < 4096 || n > 1<<20 || n&(n-1) != 0 {
			return usageErrorf("squashfs: --block-size %q is not a power of two from 4K to 1M", s)
		}
		opts.BlockSize = n
	}
	if opts.Processors, err = processors(c); err != nil {
		return err
	}
	if err := checkCompressor(opts); err != nil {
		return err
	}
	opts.AllRoot = opts.AllRoot || c.Bool("all-root")
	opts.NoFragments = c.Bool("no-fragments")
	opts.NoDuplicates = c.Bool("no-duplicates")
	opts.NoHardlinks = opts.NoHardlinks || c.Bool("no-hardlinks")
	if c.IsSet("all-time") {
		t := c.Int64("all-time")
		if t < 0 || t > 1<<32-1 {
			return usageErrorf("squashfs: --all-time %d is outside 0..4294967295", t)
		}
		opts.AllTime = time.Unix(t, 0)
	}
	if s := c.String("root-mode"); s != "" {
		m, err := strconv.ParseUint(s, 8, 16)
		if err != nil || m > 0o7777 {
			return usageErrorf("squashfs: --root-mode %q is not an octal mode such as 0755", s)
		}
		opts.RootMode, opts.SetRootMode = uint16(m), true
	}
	mkfs, err := mkfsTime(c)
	if err != nil {
		return err
	}
	u := newUI(c)
	start := time.Now()
	job := builder.SquashfsJob{Dirs: c.Args().Slice(), MkfsTime: mkfs, Logf: u.Progress}
	if closureMode {
		if job.Closure, err = loadClosure(c, u, in); err != nil {
			return err
		}
	}
	opts.Progress = imageProgress(u, "")
	if err := useCache(c, u, &opts); err != nil {
		return err
	}
	job.Options = opts
	u.Debugf("compressor %q, encoder %s, %d processors", opts.Compressor.String(), opts.Compressor.EncoderName(), opts.Processors)
	out := c.String("output")
	st, err := builder.Squashfs(c.Context, out, job)
	u.Done()
	if err != nil {
		return err
	}
	u.Debugf("%d inodes, %d data blocks, %d sparse blocks, %d fragment blocks", st.Inodes, st.DataBlocks, st.SparseBlocks, st.Fragments)
	if s := builder.CacheSummary(st); s != "" {
		u.Debugf("%s", s)
	}
	u.Infof("%s: %s from %s in %d files, %d directories (ratio %.3f); %d duplicate files (%s) stored once; %s",
		out, humanBytes(st.OutputBytes), humanBytes(st.InputBytes), st.Files, st.Dirs, float64(st.OutputBytes)/float64(max(st.InputBytes, 1)),
		st.Duplicates, humanBytes(st.DuplicateBytes), time.Since(start).Round(time.Millisecond))
	return nil
}

// squashfsParseSize reads a byte count with an optional K or M suffix.
func squashfsParseSize(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(strings.ToUpper(s), "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(strings.ToUpper(s), "M"):
		mult, s = 1<<20, s[:len(s)-1]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > (1<<30)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
