package main

import (
	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/nixstore"
	"github.com/urfave/cli/v2"
)

func init() { registerCommand(netbootCommand) }

func netbootCommand() *cli.Command {
	return &cli.Command{
		Name:      "netboot",
		Usage:     "write bzImage (Image on aarch64), initrd (with the store appended), netboot.ipxe and manifest.json",
		ArgsUsage: " ",
		Description: "Builds the squashfs of the system's closure, appends it to the system's\n" +
			"initrd as a cpio segment holding /nix-store.squashfs, and writes the\n" +
			"directory a netboot server serves:\n\n" +
			"  DIR/bzImage        the kernel; DIR/Image for an aarch64 system, as nixpkgs\n" +
			"                     names it (the `system` file, else the kernel's header)\n" +
			"  DIR/initrd         the system's initrd followed by the store image\n" +
			"  DIR/netboot.ipxe   iPXE script: init=<toplevel>/init, kernel-params, ${cmdline}\n" +
			"  DIR/nixos.efi      with --uki: the same as one UEFI executable (nbimg uki)\n" +
			"  DIR/manifest.json  inputs, settings, size and sha256 of each file\n\n" +
			"DIR is replaced whole at the end, or left alone on failure. The same input\n" +
			"gives the same bytes in every file (add the global --timings to record\n" +
			"durations in manifest.json).\n\n" +
			"Examples:\n" +
			"  nbimg netboot -o netboot --toplevel ./result\n" +
			"  nbimg netboot -o netboot --toplevel ./result --closure ./closure-info \\\n" +
			"      --comp \"zstd -Xcompression-level 6\" --cmdline \"console=ttyS0\"\n" +
			"  SOURCE_DATE_EPOCH=1 nbimg netboot -o /srv/tftp/nixos --toplevel /nix/store/...-nixos-system-x",
		Flags: bootTreeFlags("netboot.ipxe", append([]cli.Flag{
			&cli.BoolFlag{Name: "uki", Usage: "also write nixos.efi, a Unified Kernel Image of the same kernel, initrd and command line (see nbimg uki)"},
		}, ukiFlags()...)...),
		Action: runNetboot,
	}
}

func runNetboot(c *cli.Context) error {
	var uo *builder.UKIOptions
	if c.Bool("uki") {
		var err error
		if uo, err = ukiOptionsFromFlags(c); err != nil {
			return err
		}
	} else if name := ukiFlagsSet(c); name != "" {
		return usageErrorf("--%s needs --uki", name)
	}
	return bootTreeCommand(c, "initrd", func(cl *nixstore.Closure, out string, o builder.BootOptions) (*builder.BootResult, error) {
		o.UKI = uo
		return builder.Netboot(c.Context, cl, out, o)
	})
}
