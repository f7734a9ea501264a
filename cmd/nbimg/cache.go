package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nbimg/nbimg/cache"
	"github.com/nbimg/nbimg/squashfs"
	"github.com/urfave/cli/v2"
)

func init() { registerCommand(cacheCommand) }

// cacheFlag is --cache, taken by every command that writes a store image
// and by `nbimg cache`.
func cacheFlag() cli.Flag {
	return &cli.StringFlag{
		Name:      "cache",
		Usage:     "keep compressed store paths in `DIR` and reuse them (the output does not change)",
		EnvVars:   []string{"NBIMG_CACHE"},
		TakesFile: true,
	}
}

// openCacheFlag opens the --cache directory, or returns nil without one.
func openCacheFlag(c *cli.Context) (*cache.Dir, error) {
	dir := c.String("cache")
	if dir == "" {
		return nil, nil
	}
	return cache.Open(dir)
}

// useCache sets up opts to use the --cache directory, if any, and to print
// the writer's warnings.
func useCache(c *cli.Context, u *ui, opts *squashfs.Options) error {
	opts.Warn = func(s string) { u.Warnf("%s", s) }
	d, err := openCacheFlag(c)
	if err != nil || d == nil {
		return err
	}
	if d.ReadOnly() {
		u.Debugf("cache %s is read-only: used, not written", d.Path())
	}
	opts.Cache = d
	return nil
}

func cacheCommand() *cli.Command {
	dir := func(c *cli.Context) (*cache.Dir, error) {
		d, err := openCacheFlag(c)
		if err == nil && d == nil {
			err = usageErrorf("cache %s: no cache directory: give --cache DIR or set NBIMG_CACHE", c.Command.Name)
		}
		return d, err
	}
	return &cli.Command{
		Name:  "cache",
		Usage: "show or bound the rebuild cache (--cache DIR or $NBIMG_CACHE)",
		Description: "Commands that write a store image take --cache DIR (or $NBIMG_CACHE): each\n" +
			"store path's compressed data is kept there and reused while it is unchanged.\n" +
			"Nothing bounds the directory but prune.\n\n" +
			"Examples:\n" +
			"   nbimg cache stats --cache ~/.cache/nbimg\n" +
			"   NBIMG_CACHE=~/.cache/nbimg nbimg cache prune --max-size 5G --older-than 720h",
		Subcommands: []*cli.Command{
			{
				Name:  "stats",
				Usage: "print the number and size of entries and their last use",
				Flags: []cli.Flag{cacheFlag()},
				Action: func(c *cli.Context) error {
					d, err := dir(c)
					if err != nil {
						return err
					}
					st, err := d.Stats(time.Now())
					if err != nil {
						return err
					}
					w := c.App.Writer
					fmt.Fprintf(w, "directory  %s\n", st.Directory)
					fmt.Fprintf(w, "entries    %d\n", st.Entries)
					fmt.Fprintf(w, "bytes      %d (%s)\n", st.Bytes, humanBytes(st.Bytes))
					if st.Entries > 0 {
						fmt.Fprintf(w, "last used  %s to %s\n", st.Oldest.UTC().Format(time.RFC3339), st.Newest.UTC().Format(time.RFC3339))
					}
					if st.TempFiles > 0 {
						fmt.Fprintf(w, "temporary  %d files, %s (%d left by killed builds; prune removes them)\n", st.TempFiles, humanBytes(st.TempBytes), st.StaleTemps)
					}
					if st.ReadOnly {
						fmt.Fprintln(w, "read-only  yes")
					}
					return nil
				},
			},
			{
				Name:  "prune",
				Usage: "remove entries not used for a while, then the least recently used beyond a size",
				Flags: []cli.Flag{
					cacheFlag(),
					&cli.StringFlag{Name: "max-size", Usage: "keep at most `SIZE` bytes of entries (suffix K, M, G or T: powers of 1024)"},
					&cli.DurationFlag{Name: "older-than", Usage: "remove entries last used longer ago than `DURATION` (e.g. 720h)"},
				},
				Action: func(c *cli.Context) error {
					maxSize := int64(-1)
					if s := c.String("max-size"); s != "" {
						n, err := parseSize(s)
						if err != nil {
							return usageErrorf("cache prune: --max-size: %v", err)
						}
						maxSize = n
					}
					older := c.Duration("older-than")
					if older < 0 {
						return usageErrorf("cache prune: --older-than %v is negative", older)
					}
					if maxSize < 0 && older == 0 {
						return usageErrorf("cache prune: give --max-size and/or --older-than")
					}
					d, err := dir(c)
					if err != nil {
						return err
					}
					r, err := d.Prune(maxSize, older, time.Now())
					if err != nil {
						return err
					}
					newUI(c).Infof("removed %d entries (%s); %d entries (%s) left", r.Removed, humanBytes(r.RemovedBytes), r.Entries, humanBytes(r.Bytes))
					return nil
				},
			},
		},
	}
}

// parseSize parses a byte count with an optional K, M, G or T suffix
// (powers of 1024).
func parseSize(s string) (int64, error) {
	num, mult := strings.ToUpper(s), int64(1)
	for i, suf := range []string{"K", "M", "G", "T"} {
		if v, ok := strings.CutSuffix(num, suf); ok {
			num, mult = v, int64(1)<<(10*(i+1))
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size such as 500M or 5G", s)
	}
	return n * mult, nil
}
