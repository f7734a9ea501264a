package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/nbimg/nbimg/binarycache"
	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/cmdline"
	"github.com/nbimg/nbimg/netboot"
	"github.com/nbimg/nbimg/nixstore"
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
			"    pxelinux.cfg/default     menu: one entry per x86_64 --toplevel, the first\n" +
			"                             boots by itself after --menu-timeout seconds\n" +
			"    <toplevel>/bzImage       each system's kernel (Image for an aarch64 system)\n" +
			"    <toplevel>/initrd        its initrd followed by its store image\n" +
			"  DIR/boot.ipxe              the same menu for iPXE (files under tftp/)\n" +
			"  DIR/dnsmasq.conf           TFTP from DIR/tftp and proxy DHCP on each --proxy-net\n" +
			"                             (dnsmasq -d -C DIR/dnsmasq.conf, as root)\n" +
			"  DIR/manifest.json          inputs, settings, each system's architecture and\n" +
			"                             files, each client kind's boot file, size and\n" +
			"                             sha256 of each file\n\n" +
			"UEFI clients (--uefi): dnsmasq.conf picks the boot file by the client's\n" +
			"architecture (DHCP option 93: 0 BIOS, 7 and 9 x86-64 UEFI, 11 arm64 UEFI).\n" +
			"With --uefi ipxe, x86-64 UEFI loads tftp/ipxe.efi (iPXE's EFI build, from\n" +
			"--ipxe or Debian's ipxe package), which asks again as iPXE and gets\n" +
			"tftp/boot.ipxe, the menu with files beside it. With --uefi uki, every\n" +
			"system also gets tftp/<toplevel>/nixos.efi (see nbimg uki; --sign-key signs\n" +
			"them): x86-64 UEFI loads the first x86_64 system's, arm64 UEFI the first\n" +
			"aarch64 system's. --http-base URL adds UEFI HTTP boot answers for the same\n" +
			"files under URL.\n\n" +
			"Architectures: BIOS clients, pxelinux and the iPXE menus get the x86_64\n" +
			"systems only; aarch64 systems boot as UKIs on arm64 UEFI clients and need\n" +
			"--uefi uki (Debian ships no arm64 iPXE). A tree of aarch64 systems alone has\n" +
			"no pxelinux files and leaves BIOS clients unanswered. The UKI stub follows\n" +
			"each system's architecture; --stub serves the systems of its own\n" +
			"architecture, the others get the default stub.\n\n" +
			"--store-url BASE serves each system's store over the network instead of in\n" +
			"its initrd (as nbimg netboot --store-url does): its initrd is the toplevel's\n" +
			"followed by the small stage-0 segment, its command line starts with\n" +
			"rdinit=/nbimg/stage0, and its image is tftp/<toplevel>/nix-store.squashfs.\n" +
			"BASE is the base of every system's URL:\n" +
			"  http(s)://HOST/PATH   system at http(s)://HOST/PATH/<toplevel>/nix-store.squashfs:\n" +
			"                        serve DIR/tftp at BASE (python3 -m http.server\n" +
			"                        --directory DIR/tftp 8000, with BASE http://SERVER:8000)\n" +
			"  nbd://HOST[:PORT][/P] system at nbd://HOST[:PORT]/[P/]<toplevel>: one export\n" +
			"                        per system, named after its directory (nbd-server\n" +
			"                        sections; nbdkit's file plugin for a single system)\n" +
			"manifest.json gives each entry's URL, image, size and dm-verity root hash.\n\n" +
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
			"      --syslinux /usr/share/syslinux\n" +
			"  nbimg pxe -o /srv/pxe --toplevel ./result --store-url http://192.168.1.2:8000 \\\n" +
			"      --proxy-net 192.168.1.0/24\n" +
			"  nbimg pxe -o /srv/pxe --toplevel ./pc --toplevel ./arm-server --uefi uki \\\n" +
			"      --stub ./linuxaa64.efi.stub --proxy-net 192.168.1.0/24",
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
			&cli.StringFlag{Name: "uefi", Value: builder.UEFINone, Usage: "what UEFI clients boot: `MODE` none, ipxe (x86-64: iPXE's EFI build chaining tftp/boot.ipxe) or uki (each architecture's first system's nixos.efi; needed for aarch64 systems)"},
			&cli.StringFlag{Name: "ipxe", Usage: "`DIR` holding iPXE's EFI build, snponly.efi or ipxe.efi (default: Debian's ipxe package)", TakesFile: true},
			&cli.StringFlag{Name: "http-base", Usage: "also answer UEFI HTTP boot clients with files under this `URL` (where the tftp directory is served over HTTP)"},
		}, append(append(ukiFlags(), storeURLFlags()...), pxeInputFlags()...)...), storeImageFlags()...),
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
		UEFI:      c.String("uefi"),
		IPXEDir:   c.String("ipxe"),
		HTTPBase:  c.String("http-base"),
	}
	switch opts.UEFI {
	case builder.UEFINone:
		if opts.HTTPBase != "" {
			return usageErrorf("--http-base needs --uefi ipxe or --uefi uki")
		}
	case builder.UEFIIPXE, builder.UEFIUKI:
	default:
		return usageErrorf("--uefi %q: want none, ipxe or uki", opts.UEFI)
	}
	if opts.UEFI == builder.UEFIUKI {
		uo, err := ukiOptionsFromFlags(c)
		if err != nil {
			return err
		}
		opts.UKI = *uo
	} else if name := ukiFlagsSet(c); name != "" {
		return usageErrorf("--%s needs --uefi uki", name)
	}
	if opts.IPXEDir != "" && opts.UEFI != builder.UEFIIPXE {
		return usageErrorf("--ipxe needs --uefi ipxe")
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
	if c.String("store-url") != "" && opts.Substitute != nil {
		return usageErrorf("pxe: --store-url and --binary-cache do not go together: the store comes from one or the other")
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
	if opts.NetStores, err = pxeNetStores(c, u, systems); err != nil {
		return err
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

// pxeNetStores returns the --store-url settings for each architecture of
// the systems (stage 0 is a program of the client's architecture), or nil
// without the flag.
func pxeNetStores(c *cli.Context, u *ui, systems []*nixstore.Closure) (map[nixstore.Arch]*builder.NetStore, error) {
	var out map[nixstore.Arch]*builder.NetStore
	for _, cl := range systems {
		a := cl.Toplevel.Arch
		if _, done := out[a]; done {
			continue
		}
		ns, err := netStoreFromFlags(c, u, cl)
		if err != nil || ns == nil {
			return nil, err
		}
		if out == nil {
			out = map[nixstore.Arch]*builder.NetStore{}
		}
		out[a] = ns
	}
	return out, nil
}
