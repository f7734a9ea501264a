package netstore

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// Module is nbimg's module path; stage 0 is its command cmd/nbimg-stage0.
const (
	Module        = "github.com/nbimg/nbimg"
	Stage0Package = Module + "/cmd/nbimg-stage0"
	// Stage0Name is the program's file name beside nbimg.
	Stage0Name = "nbimg-stage0"
	// Stage0Env names a variable holding the path of a stage-0 program.
	Stage0Env = "NBIMG_STAGE0"
)

// ErrStage0 is returned when no usable stage-0 program is found or built.
var ErrStage0 = errors.New("netstore: no stage-0 program")

// GOARCH returns Go's name for the architecture of a NixOS system
// ("x86_64-linux" -> "amd64").
func GOARCH(system string) (string, error) {
	switch strings.TrimSuffix(system, "-linux") {
	case "x86_64":
		return "amd64", nil
	case "aarch64":
		return "arm64", nil
	case "i686":
		return "386", nil
	case "riscv64":
		return "riscv64", nil
	case "armv7l", "armv6l":
		return "arm", nil
	}
	return "", fmt.Errorf("%w: unknown system %q", ErrStage0, system)
}

var elfMachine = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386,
	"riscv64": elf.EM_RISCV, "arm": elf.EM_ARM,
}

// CheckStage0 checks that b is a static Linux executable for goarch (no
// program interpreter: the initramfs has no dynamic loader before the
// system's stage 1).
func CheckStage0(b []byte, goarch string) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%w: not an ELF executable: %w", ErrStage0, err)
	}
	defer f.Close()
	if want, ok := elfMachine[goarch]; !ok || f.Machine != want {
		return fmt.Errorf("%w: built for %s, the system needs %s", ErrStage0, f.Machine, goarch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: dynamically linked (build it with CGO_ENABLED=0)", ErrStage0)
		}
	}
	return nil
}

// Stage0Options say where to find or how to build the stage-0 program.
type Stage0Options struct {
	// File is a given program (the --stage0 flag, or $NBIMG_STAGE0).
	File string
	// GOARCH of the target system.
	GOARCH string
	// CacheDir keeps programs built with the Go toolchain; "" means
	// os.UserCacheDir()/nbimg.
	CacheDir string
	// Logf receives a line saying which program is used.
	Logf func(format string, args ...any)
}

// Stage0 returns the stage-0 program for o.GOARCH, in this order: o.File;
// $NBIMG_STAGE0; nbimg-stage0 beside the running executable (make build,
// `go install .../cmd/...`); otherwise it is built with the Go toolchain
// (CGO_ENABLED=0, -trimpath) from nbimg's own module source, which the
// module cache holds after `go install github.com/nbimg/nbimg/cmd/nbimg@V`
// and a checkout holds when nbimg runs from one, and kept in CacheDir.
func Stage0(ctx context.Context, o Stage0Options) ([]byte, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	try := func(path, what string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrStage0, what, err)
		}
		if err := CheckStage0(b, o.GOARCH); err != nil {
			return nil, fmt.Errorf("%s %s: %w", what, path, err)
		}
		logf("stage 0: %s (%s)", path, what)
		return b, nil
	}
	if o.File != "" {
		return try(o.File, "--stage0")
	}
	if p := os.Getenv(Stage0Env); p != "" {
		return try(p, "$"+Stage0Env)
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), Stage0Name)
		if _, err := os.Stat(p); err == nil {
			b, err := try(p, "beside nbimg")
			if err == nil {
				return b, nil
			}
			logf("%v", err)
		}
	}
	return buildStage0(ctx, o, logf)
}

// moduleSource finds the directory holding nbimg's source: the module
// cache's copy of the running version, or the checkout around the working
// directory.
func moduleSource(ctx context.Context, goTool string) (dir, version string, err error) {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Path == Module && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		cmd := exec.CommandContext(ctx, goTool, "mod", "download", "-json", Module+"@"+bi.Main.Version)
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		out, err := cmd.Output()
		var m struct{ Dir, Version string }
		if err == nil && json.Unmarshal(out, &m) == nil && m.Dir != "" {
			return m.Dir, m.Version, nil
		}
	}
	out, err := exec.CommandContext(ctx, goTool, "list", "-m", "-json").Output()
	if err == nil {
		var m struct{ Path, Dir string }
		if json.Unmarshal(out, &m) == nil && m.Path == Module && m.Dir != "" {
			return m.Dir, "devel", nil
		}
	}
	return "", "", fmt.Errorf("%w: nbimg-stage0 is not beside nbimg and nbimg's source is not in the module cache or the working directory: install it with `CGO_ENABLED=0 go install %s@latest` or pass --stage0", ErrStage0, Stage0Package)
}

func buildStage0(ctx context.Context, o Stage0Options, logf func(string, ...any)) ([]byte, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("%w: nbimg-stage0 is not beside nbimg and there is no Go toolchain to build it: install it with `CGO_ENABLED=0 go install %s@latest` or pass --stage0", ErrStage0, Stage0Package)
	}
	dir, version, err := moduleSource(ctx, goTool)
	if err != nil {
		return nil, err
	}
	cache := o.CacheDir
	if cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		cache = filepath.Join(base, "nbimg")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStage0, err)
	}
	out := filepath.Join(cache, fmt.Sprintf("nbimg-stage0-%s-%s", strings.ReplaceAll(version, "/", "_"), o.GOARCH))
	if version != "devel" {
		if b, err := os.ReadFile(out); err == nil && CheckStage0(b, o.GOARCH) == nil {
			logf("stage 0: %s (cached)", out)
			return b, nil
		}
	}
	tmp := out + fmt.Sprintf(".tmp%d", os.Getpid())
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", tmp, "./cmd/nbimg-stage0")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.GOARCH, "GOFLAGS=-mod=readonly")
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("%w: building it in %s: %w\n%s", ErrStage0, dir, err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("%w: %w", ErrStage0, err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStage0, err)
	}
	if err := CheckStage0(b, o.GOARCH); err != nil {
		return nil, err
	}
	logf("stage 0: built %s from %s", out, dir)
	return b, nil
}
