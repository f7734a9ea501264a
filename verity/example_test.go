package verity_test

import (
	"bytes"
	"fmt"

	"github.com/nbimg/nbimg/verity"
)

// Hash an image as it streams past, then append the hash area after it and
// build the kernel's table line for a device holding both.
func Example() {
	image := bytes.Repeat([]byte{0}, 3*verity.BlockSize) // a 4 KiB-aligned filesystem
	w, err := verity.NewWriter([]byte("salt"), [16]byte{})
	if err != nil {
		panic(err)
	}
	w.Write(image) //nolint:errcheck // Write fails only after Close
	tree, err := w.Close()
	if err != nil {
		panic(err)
	}
	device := append(image, tree.HashArea()...)
	line, err := tree.Table("/dev/nbd0", "/dev/nbd0", tree.DataSize())
	if err != nil {
		panic(err)
	}
	fmt.Println(len(device), tree.HashAreaSize())
	fmt.Println(line[:54])
	// Output:
	// 20480 8192
	// 0 24 verity 1 /dev/nbd0 /dev/nbd0 4096 4096 3 4 sha256
}
