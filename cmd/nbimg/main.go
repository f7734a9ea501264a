// Command nbimg turns a Nix store closure into network-boot artifacts.
//
// main only wires signals and process exit codes; the app itself is built by
// newApp so tests can run every command in-process.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nbimg/nbimg/internal/atomicfile"
)

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		// The first signal cancels the work, which unwinds and removes
		// what it wrote; a second one stops at once.
		s := <-sigs
		cancel(interruptedError{s})
		s = <-sigs
		atomicfile.RemoveTemporaries()
		fmt.Fprintf(os.Stderr, "nbimg: %v again: stopped at once\n", s)
		os.Exit(exitSignal)
	}()
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	signal.Stop(sigs)
	os.Exit(code)
}

// interruptedError is the cause of the context's cancellation when a signal
// arrives; run reports it instead of "context canceled".
type interruptedError struct{ sig os.Signal }

func (e interruptedError) Error() string { return fmt.Sprintf("interrupted (%v)", e.sig) }
