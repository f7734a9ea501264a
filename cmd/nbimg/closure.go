package main

import (
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/nixstore"
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
			storeRootFlag(),
			processorsFlag("serialise paths"),
		},
		Action: runClosure,
	}
}

func runClosure(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageErrorf("closure: give at least one ROOT store path")
	}
	workers, err := processors(c)
	if err != nil {
		return err
	}
	u := newUI(c)
	start := time.Now()
	out := c.String("output")
	cl, err := builder.WriteClosure(c.Context, out, c.Args().Slice(), nixstore.ScanOptions{
		StoreRoot: c.String("store-root"),
		Workers:   workers,
		Progress: func(done, known int, narBytes uint64) {
			u.Progress("scanning %d/%d paths, %s", done, known, humanBytes(int64(narBytes)))
		},
	}, u.Debugf)
	u.Done()
	if err != nil {
		return err
	}
	u.Infof("%s: %d paths, %s of NAR", out, len(cl.Paths), humanBytes(int64(cl.NarSize())))
	u.Debugf("scanned in %s", time.Since(start).Round(time.Millisecond))
	return nil
}
