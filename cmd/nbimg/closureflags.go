package main

import (
	"github.com/nbimg/nbimg/builder"
	"github.com/urfave/cli/v2"
)

// closureInputFlags are the flags of every command that reads a closure.
func closureInputFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name:      "closure",
			Usage:     "closureInfo `DIR` (store-paths, registration) or a registration file; without it the closure of --toplevel is computed",
			TakesFile: true,
		},
		&cli.StringFlag{
			Name:      "toplevel",
			Usage:     "NixOS system: a store `PATH` or a symlink to one (nix-build's result)",
			TakesFile: true,
		},
		&cli.StringFlag{
			Name:      "store-root",
			Usage:     "read /nix/store/X from `DIR`/nix/store/X (a store built in a chroot)",
			TakesFile: true,
		},
	}
}

// closureInputFromFlags turns the closure flags into builder.Input.
func closureInputFromFlags(c *cli.Context) builder.Input {
	return builder.Input{
		Closure:   c.String("closure"),
		Toplevel:  c.String("toplevel"),
		StoreRoot: c.String("store-root"),
	}
}
