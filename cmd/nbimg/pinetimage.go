package main

import (
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/netboot"
	"github.com/nbimg/nbimg/nfsroot"
	"github.com/urfave/cli/v2"
)

func init() { registerCommand(piNetimageCommand) }

func piNetimageCommand() *cli.Command {
	return &cli.Command{
		Name:      "pi-netimage",
		Usage:     "write a Raspberry Pi TFTP boot/ directory and an NFS root holding the system",
		ArgsUsage: " ",
		Description: "Lays out what raspberry-pi-nix's net-image module builds, for a Pi that\n" +
			"loads its boot files over TFTP and mounts its root over NFS:\n\n" +
			"  DIR/boot/          served by TFTP: firmware (--firmware), config.txt,\n" +
			"                     cmdline.txt, the kernel (kernel8.img on the Pi 3 and 4,\n" +
			"                     kernel_2712.img on the Pi 5), initrd, device trees and\n" +
			"                     overlays; with --serial, a copy in boot/SERIAL/\n" +
			"  DIR/os/NAME/       the NFS root: nix/store with the closure (copied, not\n" +
			"                     linked, with the store's modes and mtime 1),\n" +
			"                     nix-path-registration, boot/firmware, sbin/init\n" +
			"  DIR/exports        the /etc/exports line for the root\n" +
			"  DIR/dnsmasq.conf   proxy DHCP and TFTP for the Pi bootloader\n" +
			"  DIR/manifest.json  inputs, settings, size and sha256 of each file\n\n" +
			"cmdline.txt is: root=/dev/nfs nfsroot=HOST:/PATH,vers=3[,--nfs-options] rw\n" +
			"ip=dhcp rootwait init=<toplevel>/init <kernel-params> [--cmdline].\n" +
			"HOST:/PATH (--nfs-root) is where the server exports DIR/os/NAME. NAME\n" +
			"defaults to nixos-net-image-<nixos-version>-<system>, as raspberry-pi-nix\n" +
			"names it. Run as root so the root's files are owned by root.\n\n" +
			"DIR is replaced whole at the end, or left alone on failure.\n\n" +
			"Examples:\n" +
			"  nbimg pi-netimage -o pi --toplevel ./result --nfs-root 192.168.1.2:/srv/nfs/pi \\\n" +
			"      --firmware /nix/store/...-raspberrypi-firmware --model pi4\n" +
			"  nbimg pi-netimage -o /srv/pi --toplevel ./result --nfs-root nas:/export/pi \\\n" +
			"      --nfs-options proto=tcp --serial 1a2b3c4d --proxy-net 192.168.1.0/24 --model pi5",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Required: true, Usage: "output `DIR`"},
			&cli.StringFlag{Name: "nfs-root", Required: true, Usage: "`HOST:/PATH` the Pi mounts its root from (where DIR/os/NAME is exported)"},
			&cli.StringFlag{Name: "nfs-options", Usage: "more NFS mount `OPTIONS` for cmdline.txt, after vers=3 (e.g. proto=tcp)"},
			&cli.StringFlag{Name: "model", Value: string(nfsroot.Pi4), Usage: "Raspberry Pi model: pi3, pi4 or pi5 (names the kernel and config.txt)"},
			&cli.StringFlag{Name: "firmware", Usage: "`DIR` with the Pi firmware (bootcode.bin, start*.elf, fixup*.dat; nixpkgs' raspberrypifw or its share/raspberrypi/boot); default: the toplevel's firmware entry when it has them", TakesFile: true},
			&cli.StringFlag{Name: "name", Usage: "directory `NAME` of the NFS root under DIR/os (default nixos-net-image-<nixos-version>-<system>)"},
			&cli.StringSliceFlag{Name: "serial", Usage: "also write boot/`SERIAL`/ (8 hex digits) for a Pi that asks for its files there (repeatable)"},
			&cli.StringFlag{Name: "cmdline", Usage: "extra kernel parameters, last in cmdline.txt"},
			&cli.BoolFlag{Name: "uart", Value: true, Usage: "enable_uart=1 in config.txt (serial console); --uart=false turns it off"},
			&cli.StringSliceFlag{Name: "proxy-net", Usage: "IPv4 `NETWORK` (192.168.1.0 or 192.168.1.0/24) to answer proxy DHCP on in dnsmasq.conf (repeatable; none: TFTP only)"},
			&cli.StringFlag{Name: "tftp-root", Usage: "`DIR` dnsmasq serves boot/ from (default: the absolute path of DIR/boot)"},
			&cli.StringFlag{Name: "export-clients", Value: "*", Usage: "who may mount the root, in exports(5) syntax (e.g. 192.168.1.0/24)"},
			&cli.StringFlag{Name: "kernel", Usage: "use this kernel `FILE` instead of the toplevel's", TakesFile: true},
			&cli.StringFlag{Name: "initrd", Usage: "use this initrd `FILE` instead of the toplevel's", TakesFile: true},
		}, closureInputFlags()...),
		Action: runPiNetimage,
	}
}

func runPiNetimage(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("pi-netimage takes no arguments (got %q): the system comes from --toplevel", c.Args().First())
	}
	in := closureInputFromFlags(c)
	if in.Toplevel == "" {
		return usageErrorf("pi-netimage needs --toplevel (a NixOS system)")
	}
	model, err := nfsroot.ParseModel(c.String("model"))
	if err != nil {
		return usageErrorf("--model: %v", err)
	}
	root, err := nfsroot.ParseNFSRoot(c.String("nfs-root"))
	if err != nil {
		return usageErrorf("--nfs-root: %v", err)
	}
	if err := nfsroot.CheckNFSOptions(c.String("nfs-options")); err != nil {
		return usageErrorf("--nfs-options: %v", err)
	}
	if n := c.String("name"); n != "" {
		if err := nfsroot.CheckName(n); err != nil {
			return usageErrorf("--name: %v", err)
		}
	}
	var serials []string
	for _, s := range c.StringSlice("serial") {
		v, err := nfsroot.ParseSerial(s)
		if err != nil {
			return usageErrorf("--serial: %v", err)
		}
		serials = append(serials, v)
	}
	var ranges []string
	for _, n := range c.StringSlice("proxy-net") {
		r, err := netboot.ParseProxyNet(n)
		if err != nil {
			return usageErrorf("--proxy-net: %v", err)
		}
		ranges = append(ranges, r)
	}
	extra, err := cmdlineFlag(c)
	if err != nil {
		return err
	}
	u := newUI(c)
	start := time.Now()
	cl, err := loadClosure(c, u, in)
	if err != nil {
		return err
	}
	out := c.String("output")
	res, err := builder.PiNetImage(c.Context, cl, out, builder.PiOptions{
		Model:         model,
		NFSRoot:       root,
		NFSOptions:    c.String("nfs-options"),
		Cmdline:       extra,
		Name:          c.String("name"),
		Firmware:      c.String("firmware"),
		Kernel:        c.String("kernel"),
		Initrd:        c.String("initrd"),
		Serials:       serials,
		UART:          c.Bool("uart"),
		TFTPRoot:      c.String("tftp-root"),
		ProxyRanges:   ranges,
		ExportClients: c.String("export-clients"),
		ToolVersion:   appVersion(),
		Timings:       c.Bool("timings"),
		Logf:          u.Debugf,
		Progress: func(done, total int) {
			u.Progress("NFS root: %d / %d store paths copied", done, total)
		},
	})
	u.Done()
	if err != nil {
		return err
	}
	for _, w := range res.Boot.Warnings {
		u.Warnf("%s", w)
	}
	if !res.Root.Owned {
		u.Warnf("not run as root: the files of os/%s are owned by the current user; a booted NixOS wants them owned by root", res.Name)
	}
	u.Infof("%s: boot/ (%s, %d files), os/%s (%d store paths, %s), in %s",
		out, model, len(res.Boot.Files), res.Name, len(cl.Paths), humanBytes(res.Root.Bytes),
		time.Since(start).Round(100*time.Millisecond))
	return nil
}
