package uki

import (
	"bytes"
	"fmt"
	"strings"
)

// Example adds a command line and a kernel to a (tiny) stub and prints
// the section table of the result. Real stubs are systemd's
// linuxx64.efi.stub or linuxaa64.efi.stub; a Signer in Image signs the
// result.
func Example() {
	stub := miniStub(false) // stands in for os.Open("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
	cmdline := "init=/nix/store/aaaa-nixos-system/init console=ttyS0"
	kernel := bytes.Repeat([]byte{0x90}, 1000)
	var out seekBuffer // any io.WriteSeeker, such as an *os.File
	lay, err := Write(&out, Image{
		Stub:     bytes.NewReader(stub),
		StubSize: int64(len(stub)),
		Sections: []Section{
			{Name: SectionLinux, Size: int64(len(kernel)), Data: bytes.NewReader(kernel)},
			{Name: SectionCmdline, Size: int64(len(cmdline)), Data: strings.NewReader(cmdline)},
		},
	})
	if err != nil {
		panic(err)
	}
	for _, s := range lay.Sections {
		fmt.Printf("%-8s address %#x size %4d file offset %#x\n", s.Name, s.VirtualAddress, s.VirtualSize, s.PointerToRawData)
	}
	fmt.Println(lay.Size, "bytes, signed:", lay.Signed)
	// Output:
	// .text    address 0x1000 size  256 file offset 0x400
	// .data    address 0x2000 size  256 file offset 0x600
	// .cmdline address 0x3000 size   52 file offset 0x800
	// .linux   address 0x4000 size 1000 file offset 0xa00
	// 3584 bytes, signed: false
}
