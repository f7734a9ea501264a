// Package qemu boots nbimg's artifacts in QEMU for tests and the demo: a
// kernel, initrd and command line directly, or a directory served by
// QEMU's built-in DHCP/TFTP server to the iPXE option ROM of an emulated
// NIC (so netboot.ipxe scripts and pxelinux.0 run as on real hardware).
//
// It reads the guest's serial console and decides the outcome from it: the
// boot passes when a line contains the marker, and fails on a kernel panic,
// a line with a failure marker, QEMU exiting first, the timeout or the
// context's end. Failures carry the tail of the console log. QEMU is always
// killed before Boot returns.
//
// Emulation is TCG by default (`-machine accel=tcg -cpu max`; KVM hung on
// the machines this was written on); NBIMG_QEMU_ACCEL overrides it, e.g.
// NBIMG_QEMU_ACCEL=kvm. Guests are x86-64 (the pc machine, with iPXE as
// its network boot) or, through AArch64 and AArch64UEFI, aarch64 (the
// virt machine, with AAVMF's own PXE client).
package qemu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// AccelEnv names the variable that overrides the accelerator (the value of
// -machine accel=).
const AccelEnv = "NBIMG_QEMU_ACCEL"

// Defaults.
const (
	DefaultBinary  = "qemu-system-x86_64"
	DefaultAccel   = "tcg"
	DefaultCPU     = "max"
	DefaultMemory  = 512 // MiB
	DefaultNIC     = "e1000"
	DefaultTimeout = 10 * time.Minute // only a hang reaches it: failures end boots early
)

// PanicMarker is what the kernel prints when it panics.
const PanicMarker = "Kernel panic - not syncing"

// Errors a boot can end with; Boot wraps them in a *BootError.
var (
	ErrPanic      = errors.New("qemu: kernel panic")
	ErrFailMarker = errors.New("qemu: failure marker on the console")
	ErrExited     = errors.New("qemu: exited before the marker")
	ErrTimeout    = errors.New("qemu: timed out waiting for the marker")
	ErrCanceled   = errors.New("qemu: canceled")
)

// Config describes one boot. Set either Kernel (direct boot) or TFTPDir
// (network boot), or put a network in ExtraArgs (network boot from it).
type Config struct {
	// Direct boot: -kernel, -initrd and -append.
	Kernel  string
	Initrd  string
	Cmdline string

	// Network boot: QEMU's user network serves TFTPDir over TFTP and
	// announces BootFile over DHCP; the NIC's iPXE ROM boots it (an iPXE
	// script such as netboot.ipxe, pxelinux.0, a kernel...).
	TFTPDir  string
	BootFile string
	// NetDev, instead of TFTPDir, network-boots from another network: a
	// -netdev value without id (e.g. "tap,ifname=tap0,script=no,downscript=no"
	// for a tap device whose network has a DHCP and TFTP server).
	NetDev string

	// Disk boot: Disk is a raw disk image (an EFI system partition for
	// UEFI firmware, see ESP) attached as a virtio drive, writes
	// discarded; the firmware boots from it.
	Disk string

	// Marker, when a console line contains it, ends the boot successfully.
	Marker string
	// FailMarkers end the boot with ErrFailMarker when a console line
	// contains one of them. Kernel panics always fail the boot.
	FailMarkers []string

	Timeout time.Duration // default DefaultTimeout
	Memory  int           // MiB; default DefaultMemory
	Accel   string        // default $NBIMG_QEMU_ACCEL, then DefaultAccel
	CPU     string        // default DefaultCPU
	NIC     string        // network boot NIC model; default DefaultNIC
	Binary  string        // default DefaultBinary, looked up in PATH
	// ExtraArgs go to QEMU after the others. A direct boot gets no NIC
	// unless ExtraArgs contain -nic, -netdev or -net.
	ExtraArgs []string

	// Console, when set, receives the serial console as it arrives.
	Console io.Writer
}

// Result describes a boot that reached its marker.
type Result struct {
	// Console is everything QEMU printed (serial console and firmware).
	Console []byte
	// Line is the console line with the marker.
	Line string
	// Elapsed is the time from starting QEMU to the marker.
	Elapsed time.Duration
	// PoweredOff reports whether QEMU exited by itself (the guest powered
	// off) shortly after the marker; otherwise it was killed.
	PoweredOff bool
}

// BootError is a boot that did not reach its marker.
type BootError struct {
	Err     error // one of the Err* values, or an error starting QEMU
	Line    string
	Elapsed time.Duration
	Args    []string
	Console []byte
}

// TailLines is how many console lines a BootError's message shows.
const TailLines = 60

func (e *BootError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v after %.1fs", e.Err, e.Elapsed.Seconds())
	if e.Line != "" {
		fmt.Fprintf(&b, ": %q", e.Line)
	}
	fmt.Fprintf(&b, "\nqemu command: %s", strings.Join(e.Args, " "))
	fmt.Fprintf(&b, "\n--- console (last %d lines) ---\n%s\n--- end of console ---", TailLines, Tail(e.Console, TailLines))
	return b.String()
}

func (e *BootError) Unwrap() error { return e.Err }

// Tail returns the last n lines of a console log, with carriage returns and
// terminal escape sequences removed.
func Tail(console []byte, n int) string {
	s := strings.TrimRight(clean(string(console)), "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// clean drops \r and ANSI escape sequences (firmware and iPXE draw with them).
func clean(s string) string {
	if !strings.ContainsAny(s, "\r\x1b") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\r':
		case c == 0x1b && i+1 < len(s) && s[i+1] == '[':
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
		case c == 0x1b:
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// accel returns the accelerator a boot uses: c.Accel, $NBIMG_QEMU_ACCEL or
// DefaultAccel.
func (c *Config) accel() string {
	if c.Accel != "" {
		return c.Accel
	}
	if v := os.Getenv(AccelEnv); v != "" {
		return v
	}
	return DefaultAccel
}

// Args returns QEMU's arguments for c (without the binary).
func (c *Config) Args() ([]string, error) {
	direct, net, disk := c.Kernel != "", c.TFTPDir != "" || c.NetDev != "", c.Disk != ""
	switch {
	case direct && net, direct && disk, net && disk:
		return nil, errors.New("qemu: set one of Kernel (direct boot), TFTPDir (network boot) or Disk")
	case !direct && !net && !disk && !hasNetArg(c.ExtraArgs):
		return nil, errors.New("qemu: nothing to boot: set Kernel, TFTPDir, Disk, or a network in ExtraArgs")
	case c.TFTPDir != "" && c.NetDev != "":
		return nil, errors.New("qemu: set either TFTPDir (QEMU's network) or NetDev, not both")
	case c.TFTPDir != "" && c.BootFile == "":
		return nil, errors.New("qemu: network boot needs BootFile (a file in TFTPDir)")
	case c.Initrd != "" && !direct, c.Cmdline != "" && !direct:
		return nil, errors.New("qemu: Initrd and Cmdline need Kernel")
	}
	mem := c.Memory
	if mem == 0 {
		mem = DefaultMemory
	}
	cpu := c.CPU
	if cpu == "" {
		cpu = DefaultCPU
	}
	args := []string{
		"-machine", "accel=" + c.accel(),
		"-cpu", cpu,
		"-m", strconv.Itoa(mem),
		"-nographic",
		"-no-reboot",
	}
	if direct {
		args = append(args, "-kernel", c.Kernel)
		if c.Initrd != "" {
			args = append(args, "-initrd", c.Initrd)
		}
		if c.Cmdline != "" {
			args = append(args, "-append", c.Cmdline)
		}
		if !hasNetArg(c.ExtraArgs) {
			args = append(args, "-nic", "none")
		}
	} else if disk {
		if strings.Contains(c.Disk, ",") {
			return nil, fmt.Errorf("qemu: %q: QEMU options cannot hold a comma", c.Disk)
		}
		args = append(args, "-drive", "if=virtio,format=raw,snapshot=on,file="+c.Disk)
		if !hasNetArg(c.ExtraArgs) {
			args = append(args, "-nic", "none")
		}
	} else if !net {
		// A network of the caller's (ExtraArgs), e.g. a tap device on a
		// test bridge: boot from it.
		args = append(args, "-boot", "n")
	} else {
		for _, s := range []string{c.TFTPDir, c.BootFile} {
			if strings.Contains(s, ",") {
				return nil, fmt.Errorf("qemu: %q: QEMU options cannot hold a comma", s)
			}
		}
		nic := c.NIC
		if nic == "" {
			nic = DefaultNIC
		}
		netdev := "user,id=n0,tftp=" + c.TFTPDir + ",bootfile=" + c.BootFile
		if c.NetDev != "" {
			netdev = c.NetDev + ",id=n0"
		}
		args = append(args,
			"-boot", "n",
			"-netdev", netdev,
			"-device", nic+",netdev=n0")
	}
	return append(args, c.ExtraArgs...), nil
}

func hasNetArg(args []string) bool {
	for _, a := range args {
		switch a {
		case "-nic", "-netdev", "-net":
			return true
		}
	}
	return false
}

type event struct {
	err  error // nil: the marker
	line string
	at   time.Duration
}

// classify reports whether a console line decides the boot.
func classify(c *Config, line string) (event, bool) {
	switch {
	case c.Marker != "" && strings.Contains(line, c.Marker):
		return event{line: line}, true
	case strings.Contains(line, PanicMarker):
		return event{err: ErrPanic, line: line}, true
	}
	for _, m := range c.FailMarkers {
		if m != "" && strings.Contains(line, m) {
			return event{err: ErrFailMarker, line: line}, true
		}
	}
	return event{}, false
}

// powerOffGrace and panicGrace bound how long Boot waits for QEMU to exit by itself after
// the marker, and after a panic (to collect the panic's trace).
var (
	powerOffGrace = 5 * time.Second
	panicGrace    = 3 * time.Second
)

// Boot runs QEMU as c says until the marker appears (success), a failure
// shows on the console, QEMU exits, c.Timeout passes or ctx ends. QEMU is
// not running any more when Boot returns. Errors are *BootError.
func Boot(ctx context.Context, c Config) (*Result, error) {
	args, err := c.Args()
	if err != nil {
		return nil, err
	}
	bin := c.Binary
	if bin == "" {
		bin = DefaultBinary
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	cmdline := append([]string{bin}, args...)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = nil // /dev/null: QEMU's monitor on stdio sees EOF
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // a ^C for the tests does not reach QEMU first
		Pdeathsig: syscall.SIGKILL, // nor does QEMU outlive a killed test binary
	}
	cmd.Cancel = func() error { return cmd.Process.Kill() }
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout // set after StdoutPipe: both go to the log

	var (
		mu  sync.Mutex
		log bytes.Buffer
	)
	snapshot := func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return bytes.Clone(log.Bytes())
	}

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, &BootError{Err: fmt.Errorf("qemu: starting %s: %w", bin, err), Args: cmdline}
	}

	// Scan the console line by line; report the first decisive line.
	events := make(chan event, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		r := bufio.NewReaderSize(out, 64<<10)
		var line []byte
		for {
			chunk, err := r.ReadSlice('\n')
			if len(chunk) > 0 {
				mu.Lock()
				log.Write(chunk)
				mu.Unlock()
				if c.Console != nil {
					c.Console.Write(chunk) //nolint:errcheck // best effort copy
				}
				line = append(line, chunk...)
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if len(line) > 0 {
				s := strings.TrimRight(clean(string(line)), "\n")
				line = line[:0]
				if ev, ok := classify(&c, s); ok {
					ev.at = time.Since(start)
					select { // the first decisive line wins
					case events <- ev:
					default:
					}
				}
			}
			if err != nil {
				return
			}
		}
	}()
	waitDone := make(chan error, 1)
	go func() {
		<-readDone // Wait closes the pipe: read everything first
		waitDone <- cmd.Wait()
	}()

	// stop kills QEMU unless it exits within grace, and waits for it.
	exited := false
	stop := func(grace time.Duration) {
		if exited {
			return
		}
		select {
		case <-waitDone:
			exited = true
			return
		case <-time.After(grace):
		}
		cancel()
		<-waitDone
	}
	fail := func(err error, line string, at time.Duration) (*Result, error) {
		return nil, &BootError{Err: err, Line: line, Elapsed: at, Args: cmdline, Console: snapshot()}
	}

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case ev := <-events:
			if ev.err == nil {
				stop(powerOffGrace)
				return &Result{Console: snapshot(), Line: ev.line, Elapsed: ev.at, PoweredOff: exited}, nil
			}
			if ev.err == ErrPanic {
				stop(panicGrace)
			} else {
				stop(0)
			}
			return fail(ev.err, ev.line, ev.at)
		case err := <-waitDone:
			exited = true
			// The reader has finished: a last decisive line may be queued.
			select {
			case ev := <-events:
				if ev.err == nil {
					return &Result{Console: snapshot(), Line: ev.line, Elapsed: ev.at, PoweredOff: true}, nil
				}
				return fail(ev.err, ev.line, ev.at)
			default:
			}
			reason := ErrExited
			if err != nil {
				reason = fmt.Errorf("%w (%v)", ErrExited, err)
			}
			return fail(reason, "", time.Since(start))
		case <-timer.C:
			at := time.Since(start)
			stop(0)
			return fail(fmt.Errorf("%w (%v)", ErrTimeout, timeout), "", at)
		case <-ctx.Done():
			at := time.Since(start)
			stop(0)
			return fail(fmt.Errorf("%w: %v", ErrCanceled, context.Cause(ctx)), "", at)
		}
	}
}
