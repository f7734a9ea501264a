package main

import (
	"github.com/nbimg/nbimg/nixstore"
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
		storeRootFlag(),
	}
}

func storeRootFlag() cli.Flag {
	return &cli.StringFlag{
		Name:      "store-root",
		Usage:     "read /nix/store/X from `DIR`/nix/store/X (a store built in a chroot)",
		TakesFile: true,
	}
}

// closureInputFromFlags turns the closure flags into nixstore.Input.
func closureInputFromFlags(c *cli.Context) nixstore.Input {
	return nixstore.Input{
		Closure:   c.String("closure"),
		Toplevel:  c.String("toplevel"),
		StoreRoot: c.String("store-root"),
	}
}

// loadClosure loads the closure the flags name and logs its size.
func loadClosure(c *cli.Context, u *ui, in nixstore.Input) (*nixstore.Closure, error) {
	cl, err := nixstore.Load(c.Context, in)
	if err != nil {
		return nil, err
	}
	u.Debugf("closure: %d store paths, %s NAR", len(cl.Paths), humanBytes(int64(cl.NarSize())))
	return cl, nil
}
