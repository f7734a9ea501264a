package netboot_test

import (
	"fmt"

	"github.com/nbimg/nbimg/netboot"
)

func ExampleIPXE() {
	s := netboot.IPXE{
		Init:         netboot.InitPath("/nix/store/aaaa-nixos-system"),
		KernelParams: "console=ttyS0 loglevel=4",
	}
	b, err := s.Script()
	if err != nil {
		panic(err)
	}
	fmt.Print(string(b))
	// Output:
	// #!ipxe
	// kernel --name bzImage bzImage init=/nix/store/aaaa-nixos-system/init initrd=initrd console=ttyS0 loglevel=4 ${cmdline}
	// initrd --name initrd initrd
	// boot
}
