package main

import (
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/squashfs"
	"github.com/urfave/cli/v2"
)

func init() { registerCommand(kexecCommand) }

func kexecCommand() *cli.Command {
	return &cli.Command{
		Name:      "kexec-tree",
		Usage:     "write bzImage, initrd.gz (with the store appended) and kexec-boot, to boot the system with kexec",
		ArgsUsage: " ",
		Description: "Builds the squashfs of the system's closure, appends it to the system's\n" +
			"initrd (as `nbimg netboot` does), and writes a directory that boots the\n" +
			"system from any running Linux with kexec, under NixOS's names:\n\n" +
			"  DIR/bzImage        the kernel\n" +
			"  DIR/initrd.gz      the system's initrd followed by the store image\n" +
			"                     (/nix-store.squashfs in an appended cpio segment)\n" +
			"  DIR/kexec-boot     POSIX shell script: checks for kexec, loads bzImage and\n" +
			"                     initrd.gz from its own directory with the command line\n" +
			"                     init=<toplevel>/init <kernel-params> [--cmdline] [its\n" +
			"                     arguments], adds --kexec-syscall-auto when kexec knows\n" +
			"                     it, then runs kexec -e (as root)\n" +
			"  DIR/kexec.tar.gz   with --tarball: the three files under kexec/, owner 0,\n" +
			"                     the store image's time; the same input gives the same bytes\n" +
			"  DIR/manifest.json  inputs, settings, size and sha256 of each file, timings\n\n" +
			"DIR is replaced whole at the end, or left alone on failure.\n\n" +
			"Examples:\n" +
			"  nbimg kexec-tree -o kexec --toplevel ./result\n" +
			"  sudo ./kexec/kexec-boot boot.shell_on_fail\n" +
			"  nbimg kexec-tree -o kexec --toplevel ./result --closure ./closure-info --tarball \\\n" +
			"      --comp \"zstd -Xcompression-level 6\"\n" +
			"  scp kexec/kexec.tar.gz root@host: && ssh root@host 'tar -xzf kexec.tar.gz && ./kexec/kexec-boot'",
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Required: true, Usage: "output `DIR`"},
			&cli.StringFlag{Name: "cmdline", Usage: "extra kernel parameters added to kexec-boot's command line"},
			&cli.BoolFlag{Name: "tarball", Usage: "also write kexec.tar.gz of the tree"},
			&cli.StringFlag{Name: "kernel", Usage: "use this kernel `FILE` instead of the toplevel's", TakesFile: true},
			&cli.StringSliceFlag{Name: "initrd", Usage: "use this base initrd `FILE` instead of the toplevel's (repeat to concatenate several)", TakesFile: true},
		}, closureInputFlags()...), storeImageFlags()...),
		Action: runKexec,
	}
}

func runKexec(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("kexec-tree takes no arguments (got %q): the system comes from --toplevel", c.Args().First())
	}
	in := closureInputFromFlags(c)
	if in.Toplevel == "" {
		return usageErrorf("kexec-tree needs --toplevel (a NixOS system)")
	}
	img, seg, err := storeImageOptionsFromFlags(c)
	if err != nil {
		return err
	}
	u := newUI(c)
	start := time.Now()
	cl, err := builder.Load(c.Context, in)
	if err != nil {
		return err
	}
	u.Debugf("closure: %d store paths, %s NAR", len(cl.Paths), humanBytes(int64(cl.NarSize())))
	u.Debugf("squashfs: %s, encoder %s", img.Compressor, img.Compressor.EncoderName())
	img.Progress = func(p squashfs.Progress) {
		u.Progress("image: %s / %s, %d / %d files", humanBytes(p.Bytes), humanBytes(p.TotalBytes), p.Files, p.TotalFiles)
	}
	out := c.String("output")
	res, err := builder.KexecTree(c.Context, cl, out, builder.KexecOptions{
		InitrdOptions: builder.InitrdOptions{Image: img, Initrd: seg, Bases: c.StringSlice("initrd")},
		Kernel:        c.String("kernel"),
		Cmdline:       c.String("cmdline"),
		Tarball:       c.Bool("tarball"),
		ToolVersion:   appVersion(),
		Logf:          u.Debugf,
	})
	u.Done()
	if err != nil {
		return err
	}
	for _, w := range res.Initrd.Warnings {
		u.Warnf("%s", w)
	}
	s := res.Image
	u.Infof("%s: %d store paths, image %s from %s (%.1f%%), initrd.gz %s, in %s",
		out, len(cl.Paths), humanBytes(s.OutputBytes), humanBytes(s.InputBytes),
		100*float64(s.OutputBytes)/float64(max(s.InputBytes, 1)), humanBytes(res.Initrd.Size),
		time.Since(start).Round(100*time.Millisecond))
	return nil
}
