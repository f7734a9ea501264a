package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// ui reports on stderr: info lines unless --quiet, details with --verbose,
// and a progress line only when stderr is a terminal.
type ui struct {
	w        io.Writer
	quiet    bool
	verbose  bool
	terminal bool

	mu       sync.Mutex
	lastDraw time.Time
	drawn    bool
}

func newUI(c *cli.Context) *ui {
	u := &ui{w: c.App.ErrWriter, quiet: c.Bool("quiet"), verbose: c.Bool("verbose")}
	if f, ok := u.w.(interface{ Fd() uintptr }); ok && term.IsTerminal(int(f.Fd())) {
		u.terminal = true
	}
	return u
}

// Infof prints a line unless --quiet.
func (u *ui) Infof(format string, args ...any) {
	if u.quiet {
		return
	}
	u.line(format, args...)
}

// Debugf prints a line with --verbose.
func (u *ui) Debugf(format string, args ...any) {
	if !u.verbose || u.quiet {
		return
	}
	u.line(format, args...)
}

// Warnf always prints a warning line.
func (u *ui) Warnf(format string, args ...any) {
	u.line("warning: "+format, args...)
}

func (u *ui) line(format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.clearLocked()
	fmt.Fprintf(u.w, format+"\n", args...)
}

// Progress redraws a one-line status on a terminal, at most ten times a
// second; it does nothing when stderr is not a terminal or with --quiet.
func (u *ui) Progress(format string, args ...any) {
	if !u.terminal || u.quiet {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	now := time.Now()
	if now.Sub(u.lastDraw) < 100*time.Millisecond {
		return
	}
	u.lastDraw = now
	fmt.Fprintf(u.w, "\r\033[K"+format, args...)
	u.drawn = true
}

// Done clears the progress line.
func (u *ui) Done() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.clearLocked()
}

func (u *ui) clearLocked() {
	if u.drawn {
		fmt.Fprint(u.w, "\r\033[K")
		u.drawn = false
	}
}

// humanBytes formats a byte count for people.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
