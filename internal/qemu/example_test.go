package qemu_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nbimg/nbimg/internal/qemu"
)

// Boot a kernel and initrd directly and wait for a line on the serial
// console.
func ExampleBoot() {
	res, err := qemu.Boot(context.Background(), qemu.Config{
		Kernel:      "bzImage",
		Initrd:      "initrd",
		Cmdline:     "console=ttyS0 panic=-1 init=/nix/store/...-nixos-system-fixture-1.0/init",
		Marker:      "NBIMG-FIXTURE-OK",
		FailMarkers: []string{"NBIMG-FIXTURE-FAIL"},
		Timeout:     3 * time.Minute,
	})
	var be *qemu.BootError
	switch {
	case errors.As(err, &be):
		fmt.Println(be) // the reason, the QEMU command and the console's tail
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Printf("booted in %.1fs: %s\n", res.Elapsed.Seconds(), res.Line)
	}
}

// Network-boot a TFTP tree through the iPXE ROM of an emulated e1000, the
// way a PXE client on a LAN would.
func ExampleConfig_netboot() {
	c := qemu.Config{
		TFTPDir:  "out/netboot", // bzImage, initrd, netboot.ipxe
		BootFile: "netboot.ipxe",
		Marker:   "NBIMG-FIXTURE-OK",
	}
	args, _ := c.Args()
	fmt.Println(args[len(args)-6:])
	// Output: [-boot n -netdev user,id=n0,tftp=out/netboot,bootfile=netboot.ipxe -device e1000,netdev=n0]
}
