package kexec_test

import (
	"fmt"

	"github.com/nbimg/nbimg/kexec"
)

func ExampleScript() {
	s := kexec.Script{
		Init:         "/nix/store/9r8gpyv4b4yz8lqld2s3z3xh6s3kq0yc-nixos-system-host-24.11/init",
		KernelParams: "console=ttyS0 loglevel=4",
		Cmdline:      "boot.shell_on_fail",
	}
	cmdline, err := s.CommandLine()
	if err != nil {
		panic(err)
	}
	fmt.Println(cmdline)
	// The script itself, written as DIR/kexec-boot with mode 0755 beside
	// bzImage and initrd.gz:
	if _, err := s.Text(); err != nil {
		panic(err)
	}
	// Output:
	// init=/nix/store/9r8gpyv4b4yz8lqld2s3z3xh6s3kq0yc-nixos-system-host-24.11/init console=ttyS0 loglevel=4 boot.shell_on_fail
}
