package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"

	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/nixstore"

	"github.com/nbimg/nbimg/serve"
	"github.com/nbimg/nbimg/serve/dhcp"
	"github.com/urfave/cli/v2"
)

func init() { registerCommand(serveCommand) }

// defaultIPXEDir is where Debian's ipxe package puts undionly.kpxe and
// snponly.efi.
const defaultIPXEDir = "/usr/lib/ipxe"

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "network-boot machines from nbimg's directories: proxy DHCP, TFTP, HTTP and NBD",
		ArgsUsage: "DIR...",
		Description: "Serves the directories nbimg writes (netboot, pxe, kexec-tree, uki, the\n" +
			"Raspberry Pi boot/ tree, store images), read-only, searched in order:\n\n" +
			"  proxy DHCP  (ports 67 and 4011) tells PXE, UEFI HTTP boot, iPXE and\n" +
			"              Raspberry Pi clients their boot file, by architecture; the\n" +
			"              network's DHCP server still hands out the addresses, or,\n" +
			"              with --dhcp-range, nbimg does (leases kept in memory)\n" +
			"  TFTP        (--tftp-port) blksize, tsize, timeout, windowsize\n" +
			"  HTTP        (--http-port) files with range requests, iPXE scripts per\n" +
			"              machine under /_/ipxe/MAC, /metrics (Prometheus)\n" +
			"  NBD         (--nbd-port) read-only exports: any file by its path, and\n" +
			"              nix-store.squashfs as the default export\n\n" +
			"A port of 0 turns its service off. --ipxe-dir (Debian's /usr/lib/ipxe by\n" +
			"default) is served last, for undionly.kpxe and snponly.efi. SIGHUP reloads\n" +
			"the directories and the machine map; SIGINT or SIGTERM stops.\n\n" +
			"Examples:\n" +
			"  sudo nbimg serve --interface eth0 out/netboot\n" +
			"  sudo nbimg serve --interface eth0 --machines machines.json /srv/systems\n" +
			"  sudo nbimg serve --interface eth0 --dhcp-range 10.0.0.100,10.0.0.199 out/netboot\n" +
			"  sudo nbimg serve --interface eth0 --api http://localhost:8000 /srv/empty\n" +
			"  sudo nbimg serve --interface eth0 --system lab=/nix/var/nix/profiles/system /srv/empty\n" +
			"  nbimg serve --listen 127.0.0.1 --dhcp=false --http-port 8080 --tftp-port 6969 out/netboot",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "listen", Usage: "listen on `ADDR` only (default: every address)"},
			&cli.StringFlag{Name: "interface", Usage: "serve on network interface `IF` (binds every socket to it; its IPv4 address is announced)"},
			&cli.StringFlag{Name: "address", Usage: "IPv4 `ADDR` clients are told to fetch from (default: --listen, or --interface's address)"},
			&cli.BoolFlag{Name: "dhcp", Value: true, Usage: "answer PXE and HTTP boot clients as a proxy DHCP server (ports 67 and 4011)"},
			&cli.StringFlag{Name: "dhcp-range", Usage: "be the network's DHCP server: hand out addresses from `START,END[,MASK]` (in --address's subnet; MASK defaults to 255.255.255.0), leases kept in memory"},
			&cli.DurationFlag{Name: "dhcp-lease", Value: time.Hour, Usage: "lease `TIME` with --dhcp-range"},
			&cli.StringFlag{Name: "dhcp-router", Usage: "with --dhcp-range, announce `IP` as the default gateway"},
			&cli.StringFlag{Name: "dhcp-dns", Usage: "with --dhcp-range, announce these name servers (`IP[,IP...]`; stage 0 resolves store URL host names through the first)"},
			&cli.IntFlag{Name: "http-port", Value: 80, Usage: "HTTP `PORT` (0: off)"},
			&cli.IntFlag{Name: "tftp-port", Value: 69, Usage: "TFTP `PORT` (0: off)"},
			&cli.IntFlag{Name: "nbd-port", Value: 10809, Usage: "NBD `PORT` (0: off)"},
			&cli.IntFlag{Name: "tftp-max-blksize", Value: 1468, Usage: "largest TFTP block size granted, in `BYTES`"},
			&cli.StringFlag{Name: "ipxe-dir", Value: defaultIPXEDir, Usage: "`DIR` with iPXE's boot loaders, served after the others (\"\": none)"},
			&cli.StringFlag{Name: "machines", Usage: "machine map `FILE`: JSON {\"MAC\": {\"dir\": \"DIR\", \"cmdline\": \"EXTRA\"}}", TakesFile: true},
			&cli.StringFlag{Name: "api", Usage: "pixiecore API server `URL`: GET URL/v1/boot/MAC gives {kernel, initrd[], cmdline}"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: `text` or json"},
			&cli.StringSliceFlag{Name: "system", Usage: "build `NAME=TOPLEVEL` (a store path, result link or profile) on first request as nbimg netboot would, into --state-dir/NAME; rebuilt when the link moves (repeatable)"},
			&cli.StringFlag{Name: "state-dir", Usage: "`DIR` for --system builds (default: the user cache directory's nbimg/serve)"},
		}, storeImageFlags()...),
		Action: runServe,
	}
}

func runServe(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageErrorf("serve: name at least one directory to serve")
	}
	if c.String("dhcp-range") != "" && !c.Bool("dhcp") {
		return usageErrorf("serve: --dhcp-range needs DHCP: drop --dhcp=false")
	}
	opts := serve.Options{Dirs: c.Args().Slice(), Machines: c.String("machines"), API: c.String("api"),
		MaxTFTPBlock: c.Int("tftp-max-blksize"), DHCPRange: c.String("dhcp-range"), LeaseTime: c.Duration("dhcp-lease")}
	for _, name := range []string{"dhcp-router", "dhcp-dns"} {
		if c.String(name) != "" && c.String("dhcp-range") == "" {
			return usageErrorf("serve: --%s needs --dhcp-range", name)
		}
	}
	if r := c.String("dhcp-router"); r != "" {
		if opts.DHCPRouter = net.ParseIP(r).To4(); opts.DHCPRouter == nil {
			return usageErrorf("serve: --dhcp-router %q: not an IPv4 address", r)
		}
	}
	if d := c.String("dhcp-dns"); d != "" {
		for _, f := range strings.Split(d, ",") {
			ip := net.ParseIP(strings.TrimSpace(f)).To4()
			if ip == nil {
				return usageErrorf("serve: --dhcp-dns %q: %q is not an IPv4 address", d, f)
			}
			opts.DHCPDNS = append(opts.DHCPDNS, ip)
		}
	}
	if d := c.String("ipxe-dir"); d != "" {
		if _, err := os.Stat(d); err == nil {
			opts.Dirs = append(opts.Dirs, d)
		} else if c.IsSet("ipxe-dir") {
			return fmt.Errorf("serve: --ipxe-dir: %w", err)
		}
	}
	listen := c.String("listen")
	addr := func(flag string) string {
		p := c.Int(flag)
		if p == 0 {
			return ""
		}
		return net.JoinHostPort(listen, strconv.Itoa(p))
	}
	opts.HTTPAddr, opts.TFTPAddr, opts.NBDAddr = addr("http-port"), addr("tftp-port"), addr("nbd-port")
	if c.Bool("dhcp") {
		opts.DHCPAddr, opts.PXEAddr = ":67", ":4011"
	}
	switch {
	case c.String("address") != "":
		opts.Advertise = net.ParseIP(c.String("address")).To4()
		if opts.Advertise == nil {
			return usageErrorf("serve: --address %q is not an IPv4 address", c.String("address"))
		}
	case c.String("interface") != "":
		ip, err := serve.InterfaceIPv4(c.String("interface"))
		if err != nil {
			return err
		}
		opts.Advertise = ip
	case listen != "":
		opts.Advertise = net.ParseIP(listen).To4()
	}
	if c.Bool("dhcp") && opts.Advertise == nil {
		return usageErrorf("serve: proxy DHCP needs the address to announce: give --interface or --address (or --dhcp=false)")
	}
	opts.Net = serve.HostNetwork{Interface: c.String("interface")}
	level := slog.LevelInfo
	switch {
	case c.Bool("quiet"):
		level = slog.LevelWarn
	case c.Bool("verbose"):
		level = slog.LevelDebug
	}
	ho := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch c.String("log-format") {
	case "text":
		h = slog.NewTextHandler(c.App.ErrWriter, ho)
	case "json":
		h = slog.NewJSONHandler(c.App.ErrWriter, ho)
	default:
		return usageErrorf("serve: --log-format %q: use text or json", c.String("log-format"))
	}
	opts.Logger = slog.New(h)
	if err := systemsFromFlags(c, &opts); err != nil {
		return err
	}

	s, err := serve.New(opts)
	if errors.Is(err, dhcp.ErrRange) {
		return usageErrorf("--dhcp-range: %v", err)
	}
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				s.Reload() //nolint:errcheck // logged; the old configuration stays
			case <-c.Context.Done():
				return
			}
		}
	}()
	return s.Run(c.Context)
}

// systemsFromFlags turns --system flags into dynamic systems built with
// nbimg netboot's pipeline and the store image flags.
func systemsFromFlags(c *cli.Context, opts *serve.Options) error {
	specs := c.StringSlice("system")
	if len(specs) == 0 {
		return nil
	}
	iopts, err := storeImageOptionsFromFlags(c, newUI(c))
	if err != nil {
		return err
	}
	for _, spec := range specs {
		name, src, ok := strings.Cut(spec, "=")
		if !ok || name == "" || src == "" {
			return usageErrorf("serve: --system %q: use NAME=TOPLEVEL", spec)
		}
		opts.Systems = append(opts.Systems, serve.System{Name: name, Source: src,
			Build: func(ctx context.Context, toplevel, dir string) error {
				cl, err := nixstore.Load(ctx, nixstore.Input{Toplevel: toplevel})
				if err != nil {
					return err
				}
				_, err = builder.Netboot(ctx, cl, dir, builder.BootOptions{InitrdOptions: iopts, ToolVersion: appVersion()})
				return err
			}})
	}
	opts.StateDir = c.String("state-dir")
	if opts.StateDir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("serve: no --state-dir and no cache directory: %w", err)
		}
		opts.StateDir = filepath.Join(cache, "nbimg", "serve")
	}
	return nil
}
