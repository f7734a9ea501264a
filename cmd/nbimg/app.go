package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

// Exit codes, documented in the README.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed (bad input, I/O error, ...)
	exitUsage   = 2 // the command line itself is wrong
	exitSignal  = 130
)

// version is set with -ldflags "-X main.version=..."; otherwise it comes from
// the module build information.
var version = ""

// commandConstructors is filled by init functions in the per-command files,
// so adding a command never touches this file.
var commandConstructors []func() *cli.Command

func registerCommand(f func() *cli.Command) { commandConstructors = append(commandConstructors, f) }

// usageError marks errors in the command line rather than in the work.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

func appVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// newApp builds the command-line application writing to the given streams.
func newApp(stdout, stderr io.Writer) *cli.App {
	cmds := make([]*cli.Command, 0, len(commandConstructors))
	for _, f := range commandConstructors {
		cmds = append(cmds, quietUsageErrors(f()))
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	return &cli.App{
		Name:    "nbimg",
		Usage:   "turn a Nix store closure into network-boot artifacts",
		Version: appVersion(),
		Description: "nbimg builds a reproducible squashfs of a Nix closure, appends it to an\n" +
			"initrd, and writes the files that boot it over the network.\n\n" +
			"Time stamps come from SOURCE_DATE_EPOCH (or --mkfs-time), never the clock:\n" +
			"the same input gives the same bytes.",
		Writer:               stdout,
		ErrWriter:            stderr,
		Commands:             cmds,
		EnableBashCompletion: false,
		HideHelpCommand:      true,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only errors"},
			&cli.BoolFlag{Name: "verbose", Usage: "print details of the work (encoder, inputs)"},
			&cli.BoolFlag{Name: "timings", Usage: "record wall-clock timings in manifest.json (which then differs between builds)"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a Go CPU profile to `FILE` (for go tool pprof)", TakesFile: true},
		},
		// An argument that names no command is a usage error (urfave/cli
		// would print a help lookup failure).
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("unknown command %q", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Before: startProfile,
		After:  stopProfile,
		// Errors are printed once by run; keep urfave from printing or exiting.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err.Error()}
		},
	}
}

// quietUsageErrors makes a command's usage errors (a bad flag value, a
// missing required flag) come back as one usageError, where urfave/cli
// would print the whole help text first: the check of required string flags
// moves into the command's Before hook.
func quietUsageErrors(cmd *cli.Command) *cli.Command {
	if cmd.OnUsageError == nil {
		cmd.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
			return usageError{fmt.Sprintf("%s: %v", cmd.Name, err)}
		}
	}
	var required []string
	for _, f := range cmd.Flags {
		switch f := f.(type) {
		case *cli.StringFlag:
			if f.Required {
				f.Required = false
				required = append(required, f.Name)
			}
		case *cli.StringSliceFlag:
			if f.Required {
				f.Required = false
				required = append(required, f.Name)
			}
		}
	}
	if len(required) == 0 {
		return cmd
	}
	before := cmd.Before
	cmd.Before = func(c *cli.Context) error {
		for _, name := range required {
			if !c.IsSet(name) {
				return usageErrorf("%s: missing --%s", cmd.Name, name)
			}
		}
		if before != nil {
			return before(c)
		}
		return nil
	}
	return cmd
}

// startProfile starts the CPU profile --cpuprofile asks for.
func startProfile(c *cli.Context) error {
	name := c.String("cpuprofile")
	if name == "" {
		return nil
	}
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("cpu profile %s: %w", name, err)
	}
	c.App.Metadata = map[string]any{"cpuprofile": f}
	return nil
}

// stopProfile ends the profile startProfile began.
func stopProfile(c *cli.Context) error {
	f, ok := c.App.Metadata["cpuprofile"].(*os.File)
	if !ok {
		return nil
	}
	pprof.StopCPUProfile()
	return f.Close()
}

// run executes the app and maps its outcome to an exit code, printing one
// line on stderr on failure. The code follows the error's type: a
// usageError is 2, a cancelled context (an interrupt) 130, anything else 1.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "nbimg: %s\n", strings.TrimSpace(err.Error()))
		fmt.Fprintln(stderr, "Run 'nbimg --help' or 'nbimg COMMAND --help' for usage.")
		return exitUsage
	case errors.Is(err, context.Canceled) || ctx.Err() != nil:
		// The work stopped because of the interrupt; whatever error it
		// unwound with says less than that.
		msg := "interrupted"
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			msg = cause.Error()
		}
		fmt.Fprintf(stderr, "nbimg: %s\n", msg)
		return exitSignal
	}
	fmt.Fprintf(stderr, "nbimg: %s\n", strings.TrimSpace(err.Error()))
	return exitFailure
}
