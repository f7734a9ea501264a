// Command nbimg turns a Nix store closure into network-boot artifacts.
//
// main only wires signals and process exit codes; the app itself is built by
// newApp so tests can run every command in-process.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/nbimg/nbimg/internal/atomicfile"
)

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	stderr := &exitGuard{w: os.Stderr}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		// The first signal cancels the work, which unwinds and removes
		// what it wrote; a second one stops at once.
		s := <-sigs
		stderr.mu.Lock()
		stderr.wrote = false
		stderr.mu.Unlock()
		cancel(interruptedError{s})
		s = <-sigs
		stderr.mu.Lock() // held until the exit: nothing else is printed
		atomicfile.RemoveTemporaries()
		if !stderr.wrote {
			fmt.Fprintf(os.Stderr, "nbimg: %v again: stopped at once\n", s)
		}
		os.Exit(exitSignal)
	}()
	code := run(ctx, os.Args, os.Stdout, stderr)
	stderr.mu.Lock() // a second signal now changes nothing
	os.Exit(code)
}

// exitGuard is stderr shared by the work and the second-signal exit, so
// that a run ends with one error line whichever comes first.
type exitGuard struct {
	mu    sync.Mutex
	w     io.Writer
	wrote bool // something was written since the first signal
}

func (g *exitGuard) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.wrote = true
	return g.w.Write(p)
}

// interruptedError is the cause of the context's cancellation when a signal
// arrives; run reports it instead of "context canceled".
type interruptedError struct{ sig os.Signal }

func (e interruptedError) Error() string { return fmt.Sprintf("interrupted (%v)", e.sig) }

// Fd is the descriptor of the stream underneath, so the UI can tell a
// terminal; ^0 when it is not a file.
func (g *exitGuard) Fd() uintptr {
	if f, ok := g.w.(*os.File); ok {
		return f.Fd()
	}
	return ^uintptr(0)
}
