// Command nbimg turns a Nix store closure into network-boot artifacts.
//
// main only wires signals and process exit codes; the app itself is built by
// newApp so tests can run every command in-process.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
