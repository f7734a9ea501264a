package main

import (
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/urfave/cli/v2"
)

func init() { registerCommand(closureCommand) }

func closureCommand() *cli.Command {
	return &cli.Command{
		Name:      "closure",
		Usage:     "write a closureInfo directory (store-paths, registration, total-nar-size) without Nix",
		ArgsUsage: "ROOT...",
		Description: "Computes the closure of the ROOT store paths (or symlinks to them, such as\n" +
			"nix-build's result) the way Nix does, without Nix: each path is serialised\n" +
			"as a NAR for its hash and size, and its references are the store paths\n" +
			"whose hash part appears in it, followed until no new path turns up. The\n" +
			"output is what nixpkgs' closureInfo writes, byte for byte.\n\n" +
			"References are searched among all entries of the store directory, while\n" +
			"Nix searches only a build's inputs: a file that happens to name an\n" +
			"unrelated store path pulls it in here.\n\n" +
			"Example:\n" +
			"   nbimg closure -o closure-info ./result\n" +
			"   nbimg closure --store-root /mnt -o closure-info /nix/store/...-nixos-system-pi",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the closureInfo directory `DIR`", Required: true, TakesFile: true},
			&cli.StringFlag{Name: "store-root", Usage: "read /nix/store/X from `DIR`/nix/store/X (a store built in a chroot)", TakesFile: true},
			&cli.IntFlag{Name: "processors", Usage: "serialise `N` paths at once (default: all CPUs); the output is the same for any N"},
		},
		Action: runClosure,
	}
}

func runClosure(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageErrorf("closure: give at least one ROOT store path")
	}
	if c.IsSet("processors") && c.Int("processors") < 1 {
		return usageErrorf("closure: --processors must be at least 1")
	}
	u := newUI(c)
	root := c.String("store-root")
	var roots []string
	for _, a := range c.Args().Slice() {
		p, err := builder.ResolveStorePath(a, builder.DefaultStoreDir, root)
		if err != nil {
			return err
		}
		u.Debugf("root %s -> %s", a, p)
		roots = append(roots, p)
	}
	start := time.Now()
	cl, err := builder.Scan(c.Context, roots, builder.ScanOptions{
		StoreRoot: root,
		Workers:   c.Int("processors"),
		Progress: func(done, known int, narBytes uint64) {
			u.Progress("scanning %d/%d paths, %s", done, known, humanBytes(int64(narBytes)))
		},
	})
	u.Done()
	if err != nil {
		return err
	}
	out := c.String("output")
	if err := builder.WriteClosureInfo(out, cl); err != nil {
		return err
	}
	u.Infof("%s: %d paths, %s of NAR", out, len(cl.Paths), humanBytes(int64(cl.NarSize())))
	u.Debugf("scanned in %s", time.Since(start).Round(time.Millisecond))
	return nil
}
