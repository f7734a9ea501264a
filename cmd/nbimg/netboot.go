package main

import (
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/squashfs"
	"github.com/urfave/cli/v2"
)

func init() { registerCommand(netbootCommand) }

func netbootCommand() *cli.Command {
	return &cli.Command{
		Name:      "netboot",
		Usage:     "write bzImage, initrd (with the store appended), netboot.ipxe and manifest.json",
		ArgsUsage: " ",
		Description: "Builds the squashfs of the system's closure, appends it to the system's\n" +
			"initrd as a cpio segment holding /nix-store.squashfs, and writes the\n" +
			"directory a netboot server serves:\n\n" +
			"  DIR/bzImage        the kernel\n" +
			"  DIR/initrd         the system's initrd followed by the store image\n" +
			"  DIR/netboot.ipxe   iPXE script: init=<toplevel>/init, kernel-params, ${cmdline}\n" +
			"  DIR/manifest.json  inputs, settings, size and sha256 of each file, timings\n\n" +
			"DIR is replaced whole at the end, or left alone on failure.\n\n" +
			"Examples:\n" +
			"  nbimg netboot -o netboot --toplevel ./result\n" +
			"  nbimg netboot -o netboot --toplevel ./result --closure ./closure-info \\\n" +
			"      --comp \"zstd -Xcompression-level 6\" --cmdline \"console=ttyS0\"\n" +
			"  SOURCE_DATE_EPOCH=1 nbimg netboot -o /srv/tftp/nixos --toplevel /nix/store/...-nixos-system-x",
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Required: true, Usage: "output `DIR`"},
			&cli.StringFlag{Name: "cmdline", Usage: "extra kernel parameters added to netboot.ipxe"},
			&cli.StringFlag{Name: "kernel", Usage: "use this kernel `FILE` instead of the toplevel's", TakesFile: true},
			&cli.StringSliceFlag{Name: "initrd", Usage: "use this base initrd `FILE` instead of the toplevel's (repeat to concatenate several)", TakesFile: true},
		}, closureInputFlags()...), storeImageFlags()...),
		Action: runNetboot,
	}
}

func runNetboot(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("netboot takes no arguments (got %q): the system comes from --toplevel", c.Args().First())
	}
	in := closureInputFromFlags(c)
	if in.Toplevel == "" {
		return usageErrorf("netboot needs --toplevel (a NixOS system)")
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
	res, err := builder.Netboot(c.Context, cl, out, builder.NetbootOptions{
		InitrdOptions: builder.InitrdOptions{Image: img, Initrd: seg, Bases: c.StringSlice("initrd")},
		Kernel:        c.String("kernel"),
		Cmdline:       c.String("cmdline"),
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
	u.Infof("%s: %d store paths, image %s from %s (%.1f%%), initrd %s, in %s",
		out, len(cl.Paths), humanBytes(s.OutputBytes), humanBytes(s.InputBytes),
		100*float64(s.OutputBytes)/float64(max(s.InputBytes, 1)), humanBytes(res.Initrd.Size),
		time.Since(start).Round(100*time.Millisecond))
	return nil
}
