package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/nbimg/nbimg/binarycache"
	"github.com/nbimg/nbimg/builder"
	"github.com/urfave/cli/v2"
)

func init() { registerCommand(binaryCacheCommand) }

func binaryCacheCommand() *cli.Command {
	return &cli.Command{
		Name:      "binary-cache",
		Usage:     "write or extend a signed Nix binary cache of one or more closures, for clients that substitute from it",
		ArgsUsage: " ",
		Description: "Writes the store paths of each --toplevel's closure (or of each --closure)\n" +
			"as a Nix binary cache, the layout `nix copy --to file://DIR` writes, which\n" +
			"Nix substitutes from over http:// or file://:\n\n" +
			"  DIR/nix-cache-info        StoreDir, WantMassQuery, Priority\n" +
			"  DIR/<hash>.narinfo        one per store path, signed with each --sign-key\n" +
			"  DIR/nar/<filehash>.nar.xz (.nar.zst, .nar) the path's NAR, compressed\n" +
			"  DIR/manifest.json         the paths this run added\n\n" +
			"An existing DIR is extended: paths already in it are kept (and signed by a\n" +
			"--sign-key they lack), new ones added, so one directory serves every\n" +
			"generation and a new one costs only its changed paths. Every file lands\n" +
			"atomically, references before the paths that need them. The same input\n" +
			"gives the same bytes.\n\n" +
			"Keys are Nix's: make one with\n" +
			"  nix-store --generate-binary-cache-key cache.example.org-1 secret.key public.key\n" +
			"and give clients the public key (trusted-public-keys, or nbimg pxe\n" +
			"--public-key). Without --sign-key the cache is unsigned and clients that\n" +
			"require signatures (Nix's default) refuse it.\n\n" +
			"Examples:\n" +
			"  nbimg binary-cache -o /srv/cache --toplevel ./result --sign-key secret.key\n" +
			"  nbimg binary-cache -o /srv/cache --toplevel /nix/var/nix/profiles/system-42-link \\\n" +
			"      --toplevel /nix/var/nix/profiles/system-41-link --sign-key secret.key --compression zstd\n" +
			"  python3 -m http.server --directory /srv/cache 8080",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Required: true, Usage: "the cache `DIR` (created, or extended)", TakesFile: true},
			&cli.StringSliceFlag{Name: "toplevel", Usage: "NixOS system: a store `PATH` or a symlink to one; repeatable", TakesFile: true},
			&cli.StringSliceFlag{Name: "closure", Usage: "closureInfo `DIR` or registration file: one per --toplevel, one holding them all, or, without --toplevel, the closures to put in", TakesFile: true},
			storeRootFlag(),
			&cli.StringSliceFlag{Name: "sign-key", Usage: "Nix secret key `FILE` (nix-store --generate-binary-cache-key); repeatable", TakesFile: true},
			&cli.StringFlag{Name: "compression", Value: "xz", Usage: "NAR compression: xz, zstd or none"},
			&cli.IntFlag{Name: "zstd-level", Usage: "zstd `LEVEL` (1-22)", DefaultText: fmt.Sprint(binarycache.DefaultZstdLevel)},
			&cli.IntFlag{Name: "priority", Value: binarycache.DefaultPriority, Usage: "Priority in a new cache's nix-cache-info (lower is tried first; cache.nixos.org has 40)"},
		}, processorsFlag("compress NARs")),
		Action: runBinaryCache,
	}
}

func runBinaryCache(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("binary-cache takes no arguments (got %q): the paths come from --toplevel or --closure", c.Args().First())
	}
	tops, closures := c.StringSlice("toplevel"), c.StringSlice("closure")
	if len(tops) == 0 && len(closures) == 0 {
		return usageErrorf("binary-cache needs --toplevel or --closure")
	}
	if len(tops) > 0 && len(closures) > 1 && len(closures) != len(tops) {
		return usageErrorf("binary-cache: %d --closure for %d --toplevel: give one per --toplevel, or one holding them all", len(closures), len(tops))
	}
	comp, err := binarycache.ParseCompression(c.String("compression"))
	if err != nil {
		return usageErrorf("--compression: %v", err)
	}
	level := 0
	if c.IsSet("zstd-level") {
		if comp != binarycache.Zstd {
			return usageErrorf("--zstd-level is for --compression zstd")
		}
		if level = c.Int("zstd-level"); level < 1 || level > 22 {
			return usageErrorf("--zstd-level %d: want 1 to 22", level)
		}
	}
	if p := c.Int("priority"); p < 1 || p > 1000 {
		return usageErrorf("--priority %d: want 1 to 1000", p)
	}
	workers, err := processors(c)
	if err != nil {
		return err
	}
	var keys []binarycache.SecretKey
	for _, f := range c.StringSlice("sign-key") {
		k, err := binarycache.ReadSecretKeyFile(f)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	u := newUI(c)
	if len(keys) == 0 {
		u.Warnf("no --sign-key: the cache is unsigned, and Nix clients refuse unsigned paths unless require-sigs = false")
	}
	start := time.Now()
	cls, err := builder.LoadCacheClosures(c.Context, tops, closures, c.String("store-root"))
	if err != nil {
		return err
	}
	out := c.String("output")
	m, err := builder.BinaryCache(c.Context, cls, out, builder.BinaryCacheOptions{
		Compression: comp,
		Level:       level,
		Keys:        keys,
		Workers:     workers,
		Priority:    c.Int("priority"),
		Progress: func(p binarycache.Progress) {
			u.Progress("%d/%d paths, %d added: %s NAR, %s compressed", p.Paths, p.TotalPaths, p.Added,
				humanBytes(int64(p.NarBytes)), humanBytes(int64(p.FileBytes)))
		},
		Logf: u.Warnf,
	})
	u.Done()
	if err != nil {
		return err
	}
	for _, a := range m.Added {
		u.Debugf("added %s (%s NAR, %s %s)", a.StorePath, humanBytes(int64(a.NarSize)), humanBytes(int64(a.FileSize)), m.Compression)
	}
	u.Infof("%s: %d paths added (%s NAR, %s %s), %d kept, %d re-signed, in %s", out, len(m.Added),
		humanBytes(int64(m.AddedNarSize)), humanBytes(int64(m.AddedFileSize)), m.Compression,
		m.Kept, len(m.Resigned), time.Since(start).Round(100*time.Millisecond))
	if len(m.Keys) > 0 {
		u.Infof("public keys for trusted-public-keys: %s", strings.Join(m.Keys, " "))
	}
	return nil
}
