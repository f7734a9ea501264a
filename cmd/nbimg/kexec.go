package main

import (
	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/nixstore"
	"github.com/urfave/cli/v2"
)

func init() { registerCommand(kexecCommand) }

func kexecCommand() *cli.Command {
	return &cli.Command{
		Name:      "kexec-tree",
		Usage:     "write bzImage, initrd.gz (with the store appended) and kexec-boot, to boot the system with kexec",
		ArgsUsage: " ",
		Description: "Builds the squashfs of the system's closure, appends it to the system's\n" +
			"initrd (as `nbimg netboot` does), and writes a directory that boots the\n" +
			"system from any running Linux with kexec, under NixOS's names:\n\n" +
			"  DIR/bzImage        the kernel (named so on every architecture, as NixOS's\n" +
			"                     kexec tree names it)\n" +
			"  DIR/initrd.gz      the system's initrd followed by the store image\n" +
			"                     (/nix-store.squashfs in an appended cpio segment)\n" +
			"  DIR/kexec-boot     POSIX shell script: checks for kexec, loads bzImage and\n" +
			"                     initrd.gz from its own directory with the command line\n" +
			"                     init=<toplevel>/init <kernel-params> [--cmdline] [its\n" +
			"                     arguments], adds --kexec-syscall-auto when kexec knows\n" +
			"                     it, then runs kexec -e (as root)\n" +
			"  DIR/kexec.tar.gz   with --tarball: the three files under kexec/, owner 0,\n" +
			"                     the store image's time; the same input gives the same bytes\n" +
			"  DIR/manifest.json  inputs, settings, size and sha256 of each file\n\n" +
			"DIR is replaced whole at the end, or left alone on failure. The same input\n" +
			"gives the same bytes in every file (add the global --timings to record\n" +
			"durations in manifest.json).\n\n" +
			"Examples:\n" +
			"  nbimg kexec-tree -o kexec --toplevel ./result\n" +
			"  sudo ./kexec/kexec-boot boot.shell_on_fail\n" +
			"  nbimg kexec-tree -o kexec --toplevel ./result --closure ./closure-info --tarball \\\n" +
			"      --comp \"zstd -Xcompression-level 6\"\n" +
			"  scp kexec/kexec.tar.gz root@host: && ssh root@host 'tar -xzf kexec.tar.gz && ./kexec/kexec-boot'",
		Flags: bootTreeFlags("kexec-boot's command line",
			&cli.BoolFlag{Name: "tarball", Usage: "also write kexec.tar.gz of the tree"}),
		Action: runKexec,
	}
}

func runKexec(c *cli.Context) error {
	return bootTreeCommand(c, "initrd.gz", func(cl *nixstore.Closure, out string, o builder.BootOptions) (*builder.BootResult, error) {
		return builder.KexecTree(c.Context, cl, out, builder.KexecOptions{BootOptions: o, Tarball: c.Bool("tarball")})
	})
}
