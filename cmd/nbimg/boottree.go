package main

import (
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/cmdline"
	"github.com/nbimg/nbimg/nixstore"
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
	flags = append(flags, storeURLFlags()...)
	return append(flags, storeImageFlags()...)
}

// cmdlineFlag returns --cmdline, checked.
func cmdlineFlag(c *cli.Context) (string, error) {
	s := c.String("cmdline")
	if err := cmdline.CheckText("--cmdline", s); err != nil {
		return "", usageError{err.Error()}
	}
	return s, nil
}

// bootOptionsFromFlags checks the arguments of a command declared with
// bootTreeFlags, loads the closure, and returns it with the options.
func bootOptionsFromFlags(c *cli.Context, u *ui) (*nixstore.Closure, builder.BootOptions, error) {
	name := c.Command.Name
	if c.NArg() > 0 {
		return nil, builder.BootOptions{}, usageErrorf("%s takes no arguments (got %q): the system comes from --toplevel", name, c.Args().First())
	}
	in := closureInputFromFlags(c)
	if in.Toplevel == "" {
		return nil, builder.BootOptions{}, usageErrorf("%s needs --toplevel (a NixOS system)", name)
	}
	extra, err := cmdlineFlag(c)
	if err != nil {
		return nil, builder.BootOptions{}, err
	}
	iopts, err := storeImageOptionsFromFlags(c, u)
	if err != nil {
		return nil, builder.BootOptions{}, err
	}
	iopts.Bases = c.StringSlice("initrd")
	cl, err := loadClosure(c, u, in)
	if err != nil {
		return nil, builder.BootOptions{}, err
	}
	u.Debugf("store image: %s", iopts.Image.Settings().Description)
	ns, err := netStoreFromFlags(c, u, cl)
	if err != nil {
		return nil, builder.BootOptions{}, err
	}
	return cl, builder.BootOptions{
		NetStore:      ns,
		InitrdOptions: iopts,
		Kernel:        c.String("kernel"),
		Cmdline:       extra,
		ToolVersion:   appVersion(),
		Timings:       c.Bool("timings"),
	}, nil
}

// bootTreeCommand runs a command declared with bootTreeFlags: write gets
// the loaded closure and the options; the result is reported, naming the
// initrd file initrdName.
func bootTreeCommand(c *cli.Context, initrdName string,
	write func(cl *nixstore.Closure, out string, o builder.BootOptions) (*builder.BootResult, error)) error {
	u := newUI(c)
	start := time.Now()
	cl, o, err := bootOptionsFromFlags(c, u)
	if err != nil {
		return err
	}
	out := c.String("output")
	res, err := write(cl, out, o)
	u.Done()
	if err != nil {
		return err
	}
	printWarnings(u, res.Warnings)
	img := res.Image
	u.Infof("%s: %d store paths, image %s from %s (%s), %s %s, in %s",
		out, len(cl.Paths), humanBytes(img.OutputBytes), humanBytes(img.InputBytes),
		percent(img.OutputBytes, img.InputBytes),
		initrdName, humanBytes(res.Initrd.Size), time.Since(start).Round(100*time.Millisecond))
	return nil
}
