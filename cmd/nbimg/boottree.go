package main

import (
	"fmt"
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/squashfs"
	"github.com/urfave/cli/v2"
)

// bootTreeFlags are the flags of the commands that write a kernel, an
// initrd carrying the store image and a boot script (netboot, kexec-tree);
// extra come after -o.
func bootTreeFlags(scriptName string, extra ...cli.Flag) []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Required: true, Usage: "output `DIR`"},
		&cli.StringFlag{Name: "cmdline", Usage: "extra kernel parameters added to " + scriptName},
	}
	flags = append(flags, extra...)
	flags = append(flags,
		&cli.StringFlag{Name: "kernel", Usage: "use this kernel `FILE` instead of the toplevel's", TakesFile: true},
		&cli.StringSliceFlag{Name: "initrd", Usage: "use this base initrd `FILE` instead of the toplevel's (repeat to concatenate several)", TakesFile: true},
	)
	flags = append(flags, closureInputFlags()...)
	return append(flags, storeImageFlags()...)
}

// bootTreeCommand runs a command declared with bootTreeFlags: it checks the
// arguments, loads the closure, calls write with the options, and reports
// the result, naming the initrd file initrdName.
func bootTreeCommand(c *cli.Context, initrdName string,
	write func(cl *builder.Closure, out string, o builder.BootOptions) (*builder.BootResult, error)) error {
	name := c.Command.Name
	if c.NArg() > 0 {
		return usageErrorf("%s takes no arguments (got %q): the system comes from --toplevel", name, c.Args().First())
	}
	in := closureInputFromFlags(c)
	if in.Toplevel == "" {
		return usageErrorf("%s needs --toplevel (a NixOS system)", name)
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
	res, err := write(cl, out, builder.BootOptions{
		InitrdOptions: builder.InitrdOptions{Image: img, Initrd: seg, Bases: c.StringSlice("initrd")},
		Kernel:        c.String("kernel"),
		Cmdline:       c.String("cmdline"),
		ToolVersion:   appVersion(),
		Timings:       c.Bool("timings"),
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
	u.Infof("%s: %d store paths, image %s from %s (%s), %s %s, in %s",
		out, len(cl.Paths), humanBytes(s.OutputBytes), humanBytes(s.InputBytes),
		fmt.Sprintf("%.1f%%", 100*float64(s.OutputBytes)/float64(max(s.InputBytes, 1))),
		initrdName, humanBytes(res.Initrd.Size), time.Since(start).Round(100*time.Millisecond))
	return nil
}
