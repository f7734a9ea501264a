package nfsroot_test

import (
	"fmt"

	"github.com/nbimg/nbimg/nfsroot"
)

func ExampleCmdline() {
	root, err := nfsroot.ParseNFSRoot("192.168.1.2:/srv/nfs/pi")
	if err != nil {
		panic(err)
	}
	b, err := nfsroot.Cmdline{
		Root:         root,
		Options:      "proto=tcp",
		Init:         "/nix/store/aaaa-nixos-system/init",
		KernelParams: "console=ttyS1,115200",
	}.Text()
	if err != nil {
		panic(err)
	}
	fmt.Print(string(b))
	// Output:
	// root=/dev/nfs nfsroot=192.168.1.2:/srv/nfs/pi,vers=3,proto=tcp rw ip=dhcp rootwait init=/nix/store/aaaa-nixos-system/init console=ttyS1,115200
}

func ExampleConfig() {
	b, err := nfsroot.Config{Model: nfsroot.Pi5, UART: true}.Text()
	if err != nil {
		panic(err)
	}
	fmt.Print(string(b))
	// Output:
	// # Raspberry Pi 5 firmware settings, written by nbimg pi-netimage.
	// # A 64-bit kernel, and the initrd loaded into memory right after it.
	// arm_64bit=1
	// kernel=kernel_2712.img
	// initramfs initrd followkernel
	// # Serial console on the GPIO header (GPIO 14 and 15).
	// enable_uart=1
}
