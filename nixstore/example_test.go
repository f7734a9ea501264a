package nixstore_test

import (
	"fmt"
	"os"
	"strings"

	"github.com/nbimg/nbimg/nixstore"
)

// A registration as `nix-store --dump-db` prints it (base16 hash, deriver)
// comes out as nixpkgs' closureInfo writes it.
func ExampleParseRegistration() {
	in := strings.Join([]string{
		"/nix/store/0a2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-hello",
		"8e74ebfb58e27af67bedd50c03749d5ba1e0a368a46f9f4e4f97a0231d3bb84b",
		"880",
		"/nix/store/1b2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-hello.drv",
		"1",
		"/nix/store/0a2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-hello",
	}, "\n") + "\n"
	paths, err := nixstore.ParseRegistration(strings.NewReader(in), "registration")
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := nixstore.WriteRegistration(os.Stdout, paths); err != nil {
		fmt.Println(err)
	}
	// Output:
	// /nix/store/0a2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-hello
	// sha256:0jxq7cfj784p9x79yvx4d2iy18avkms0636mxmxzcyp2b3xynx4f
	// 880
	//
	// 1
	// /nix/store/0a2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-hello
}

// Errors name the file and the line.
func ExampleParseRegistration_error() {
	in := "/nix/store/0a2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-hello\nsha256:0jxq\n"
	_, err := nixstore.ParseRegistration(strings.NewReader(in), "closure/registration")
	fmt.Println(err)
	// Output:
	// closure/registration:2: NAR hash of /nix/store/0a2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-hello: invalid sha256 hash "sha256:0jxq": want 64 base16, 52 nix32 or SRI base64 digits
}

func ExampleNix32Encode() {
	fmt.Println(nixstore.Nix32Encode([]byte{0x8e, 0x74, 0xeb, 0xfb, 0x58}))
	// Output:
	// b3xynx4f
}
