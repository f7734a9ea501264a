package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/nbimg/nbimg/binarycache"
	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/cmdline"
	"github.com/nbimg/nbimg/netboot"
	"github.com/urfave/cli/v2"
)

func init() { registerCommand(pxeCommand) }

// pxeInputFlags are closureInputFlags with --toplevel and --closure
// repeatable: pxe takes several systems.
func pxeInputFlags() []cli.Flag {
	flags := []cli.Flag{
		&cli.StringSliceFlag{
			Name:      "toplevel",
			Required:  true,
			Usage:     "NixOS system: a store `PATH` or a symlink to one; repeat for more menu entries (the first is the default)",
			TakesFile: true,
		},
		&cli.StringSliceFlag{
			Name:      "closure",
			Usage:     "closureInfo `DIR` or registration file: one per --toplevel in order, or one holding them all; without it each system's closure is computed",
			TakesFile: true,
		},
	}
	for _, f := range closureInputFlags() {
		if n := f.Names()[0]; n != "toplevel" && n != "closure" {
			flags = append(flags, f)
		}
	}
	return flags
}

func pxeCommand() *cli.Command {
	return &cli.Command{
		Name:      "pxe",
		Usage:     "write a PXE tree: pxelinux and iPXE menus of one or more systems, their kernels and initrds, dnsmasq.conf",
		ArgsUsage: " ",
		Description: "Builds, for each --toplevel, the squashfs of its closure appended to its\n" +
			"initrd (as `nbimg netboot` does), and writes a directory to boot them over\n" +
			"the network from BIOS PXE firmware or iPXE:\n\n" +
			"  DIR/tftp/                  what the TFTP server serves:\n" +
			"    pxelinux.0, ldlinux.c32, menu.c32, libutil.c32   from --syslinux, or Debian's\n" +
			"                             pxelinux and syslinux-common packages\n" +
			"    pxelinux.cfg/default     menu: one entry per --toplevel, the first boots\n" +
			"                             by itself after --menu-timeout seconds\n" +
			"    <toplevel>/bzImage       each system's kernel\n" +
			"    <toplevel>/initrd        its initrd followed by its store image\n" +
			"  DIR/boot.ipxe              the same menu for iPXE (files under tftp/)\n" +
			"  DIR/dnsmasq.conf           TFTP from DIR/tftp and proxy DHCP on each --proxy-net\n" +
			"                             (dnsmasq -d -C DIR/dnsmasq.conf, as root)\n" +
			"  DIR/manifest.json          inputs, settings, entries, size and sha256 of each file\n\n" +
			"Each entry's command line is init=<toplevel>/init <kernel-params>, then\n" +
			"console= (--serial-console), loglevel= (--loglevel) and --cmdline. Menu\n" +
			"entries are labelled with the system's name, version and hash. dnsmasq.conf\n" +
			"names DIR's absolute path: build where you serve from, or edit tftp-root.\n" +
			"DIR is replaced whole at the end, or left alone on failure.\n\n" +
			"With --binary-cache URL --public-key FILE the systems boot the \"NixOS on\n" +
			"Clients\" way: each initrd is the toplevel's own, without a store image,\n" +
			"and each command line also carries " + netboot.ParamToplevel + "=<toplevel>,\n" +
			netboot.ParamSubstituter + "=URL and " + netboot.ParamTrustedKey + "=<key>, for a stage 1\n" +
			"that substitutes the closure from the cache onto the local disk (see\n" +
			"examples/binary-cache-client.nix; write the cache with nbimg binary-cache).\n\n" +
			"Examples:\n" +
			"  nbimg pxe -o /srv/pxe --toplevel ./result --proxy-net 192.168.1.0/24\n" +
			"  nbimg pxe -o pxe --toplevel /nix/var/nix/profiles/system-42-link \\\n" +
			"      --toplevel /nix/var/nix/profiles/system-41-link \\\n" +
			"      --serial-console ttyS0,115200 --loglevel 7 --cmdline boot.shell_on_fail\n" +
			"  nbimg pxe -o pxe --toplevel ./new --toplevel ./old --closure ./closure-of-both \\\n" +
			"      --syslinux /usr/share/syslinux",
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Required: true, Usage: "output `DIR`"},
			&cli.StringFlag{Name: "cmdline", Usage: "extra kernel parameters for every entry"},
			&cli.StringFlag{Name: "serial-console", Usage: "serial console `ttySN[,BAUD]` for pxelinux and the kernel (console=), e.g. ttyS0,115200"},
			&cli.StringFlag{Name: "loglevel", Usage: "kernel log level `N` (0-7) for every entry (loglevel=N)"},
			&cli.StringSliceFlag{Name: "proxy-net", Usage: "offer proxy DHCP on this IPv4 `NET` (192.168.1.0 or 192.168.1.0/24); repeatable"},
			&cli.StringFlag{Name: "syslinux", Usage: "`DIR` holding pxelinux.0, ldlinux.c32, menu.c32 and libutil.c32 (default: Debian's locations)", TakesFile: true},
			&cli.IntFlag{Name: "menu-timeout", Value: int(netboot.DefaultMenuTimeout / time.Second), Usage: "`SECONDS` before the first entry boots by itself"},
			&cli.StringFlag{Name: "title", Value: "NixOS network boot", Usage: "menu title"},
			&cli.StringFlag{Name: "binary-cache", Usage: "boot from the Nix binary cache at `URL` (nbimg binary-cache): initrds without a store image, and " + netboot.ParamToplevel + "=, " + netboot.ParamSubstituter + "=, " + netboot.ParamTrustedKey + "= on each command line; needs --public-key"},
			&cli.StringFlag{Name: "public-key", Usage: "the binary cache's public key `FILE` (name:base64, from nix-store --generate-binary-cache-key), the only key clients trust", TakesFile: true},
		}, pxeInputFlags()...), storeImageFlags()...),
		Action: runPXE,
	}
}

func runPXE(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("pxe takes no arguments (got %q): the systems come from --toplevel", c.Args().First())
	}
	tops, closures := c.StringSlice("toplevel"), c.StringSlice("closure")
	if len(tops) == 0 {
		return usageErrorf("pxe needs --toplevel (a NixOS system; repeat for more entries)")
	}
	if len(closures) > 1 && len(closures) != len(tops) {
		return usageErrorf("pxe: %d --closure for %d --toplevel: give one per --toplevel, or one holding them all", len(closures), len(tops))
	}
	extra, err := cmdlineFlag(c)
	if err != nil {
		return err
	}
	if err := cmdline.CheckText("--title", c.String("title")); err != nil {
		return usageError{err.Error()}
	}
	opts := builder.PXEOptions{
		Cmdline:   extra,
		ProxyNets: c.StringSlice("proxy-net"),
		Syslinux:  c.String("syslinux"),
		Title:     c.String("title"),
		Timeout:   time.Duration(c.Int("menu-timeout")) * time.Second,
	}
	if s := c.String("serial-console"); s != "" {
		sc, err := netboot.ParseSerial(s)
		if err != nil {
			return usageErrorf("--serial-console: %v", err)
		}
		opts.Serial = &sc
	}
	if s := c.String("loglevel"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 7 {
			return usageErrorf("--loglevel %q: want a number from 0 to 7", s)
		}
		opts.LogLevel = strconv.Itoa(n)
	}
	if t := c.Int("menu-timeout"); t < 1 || t > 3600 {
		return usageErrorf("--menu-timeout %d: want 1 to 3600 seconds", t)
	}
	for _, n := range opts.ProxyNets {
		if _, err := netboot.ParseProxyNet(n); err != nil {
			return usageErrorf("--proxy-net: %v", err)
		}
	}
	if url, keyFile := c.String("binary-cache"), c.String("public-key"); url != "" || keyFile != "" {
		if url == "" || keyFile == "" {
			return usageErrorf("pxe: --binary-cache and --public-key go together")
		}
		k, err := binarycache.ReadPublicKeyFile(keyFile)
		if err != nil {
			return err
		}
		opts.Substitute = &netboot.Substitute{URL: url, PublicKey: k.String()}
		if err := opts.Substitute.Check(); err != nil {
			return usageErrorf("--binary-cache: %v", err)
		}
	}
	u := newUI(c)
	if opts.InitrdOptions, err = storeImageOptionsFromFlags(c, u); err != nil {
		return err
	}
	start := time.Now()
	systems, err := builder.LoadSystems(c.Context, tops, closures, c.String("store-root"))
	if err != nil {
		return err
	}
	for _, cl := range systems {
		u.Debugf("%s: %d store paths, %s NAR", cl.Toplevel.Path, len(cl.Paths), humanBytes(int64(cl.NarSize())))
	}
	u.Debugf("store image: %s", opts.Image.Settings().Description)
	opts.ToolVersion = appVersion()
	opts.Timings = c.Bool("timings")
	out := c.String("output")
	res, err := builder.PXE(c.Context, systems, out, opts)
	u.Done()
	if err != nil {
		return err
	}
	var size int64
	for _, s := range res.Systems {
		printWarnings(u, s.Warnings)
		size += s.Initrd.Size
	}
	what := fmt.Sprintf("%d systems", len(systems))
	if len(systems) == 1 {
		what = "1 system"
	}
	u.Infof("%s: %s, initrds %s in all, in %s", out, what, humanBytes(size),
		time.Since(start).Round(100*time.Millisecond))
	return nil
}
