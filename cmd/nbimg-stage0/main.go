// Command nbimg-stage0 is nbimg's early userspace: the kernel starts it
// as PID 1 (rdinit=/nbimg/stage0) from the initrd nbimg builds with
// --store-url; it fetches or attaches the store image and execs the
// system's /init. It is built static (CGO_ENABLED=0); see package stage0.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/nbimg/nbimg/stage0"
)

func main() {
	if stage0.IsNBDHelper() {
		if err := stage0.NBDHelper(); err != nil {
			fmt.Fprintf(os.Stderr, "nbimg stage 0: %v\n", err)
			os.Exit(1)
		}
		return
	}
	err := stage0.Main(os.Args)
	// Main returns only on failure. As PID 1, exiting panics the kernel
	// (and panic=N reboots); give the console time to show why.
	fmt.Fprintf(os.Stdout, "nbimg stage 0: FAILED: %v\n", err)
	time.Sleep(2 * time.Second)
	os.Exit(1)
}
