package builder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nbimg/nbimg/kexec"
)

// KexecOptions configure KexecTree.
type KexecOptions struct {
	InitrdOptions
	Kernel      string // host path of the kernel; "" takes the toplevel's
	Cmdline     string // extra kernel parameters for kexec-boot
	Tarball     bool   // also write kexec.tar.gz of the tree
	ToolVersion string // recorded in the manifest
	// Logf, when set, receives a line per step.
	Logf func(format string, args ...any)
}

// KexecResult describes a kexec tree.
type KexecResult struct {
	InitrdResult
	Manifest *Manifest
}

// KexecTree writes dir with bzImage, initrd.gz (the base initrds followed
// by the store image, as Netboot writes initrd), kexec-boot and
// manifest.json, and with o.Tarball kexec.tar.gz holding the first three
// under kexec/ (dated the store image's time). dir is replaced whole, or
// left alone on failure.
func KexecTree(ctx context.Context, c *Closure, dir string, o KexecOptions) (*KexecResult, error) {
	start := time.Now()
	top := c.Toplevel
	if top == nil {
		return nil, ErrNoToplevel
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	kernel := o.Kernel
	if kernel == "" {
		kernel = c.HostPath(top.Kernel)
	}
	if len(o.Bases) == 0 {
		o.Bases = []string{c.HostPath(top.Initrd)}
	}
	script := kexec.Script{
		Init:         top.InitArg(),
		KernelParams: strings.Join(top.KernelParams, " "),
		Cmdline:      o.Cmdline,
		Label:        top.Label,
	}
	scriptText, err := script.Text()
	if err != nil {
		return nil, err
	}
	cmdline, _ := script.CommandLine()

	res := &KexecResult{}
	err = WriteDirAtomic(dir, func(tmp string) error {
		logf("kernel %s", kernel)
		if err := copyFile(filepath.Join(tmp, kexec.KernelName), kernel, 0o644); err != nil {
			return fmt.Errorf("kernel: %w", err)
		}
		f, err := os.OpenFile(filepath.Join(tmp, kexec.InitrdName), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		imageStart := time.Now()
		ir, err := WriteInitrd(ctx, f, c, o.InitrdOptions)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("initrd: %w", cerr)
		}
		if err != nil {
			return err
		}
		res.InitrdResult = *ir
		imageTime := time.Since(imageStart)
		if err := os.WriteFile(filepath.Join(tmp, kexec.ScriptName), scriptText, 0o755); err != nil {
			return err
		}
		names := []string{kexec.KernelName, kexec.InitrdName, kexec.ScriptName}
		if o.Tarball {
			logf("tarball %s", kexec.TarballName)
			if err := writeTarball(ctx, tmp, time.Unix(ir.MkfsTime, 0)); err != nil {
				return err
			}
			names = append(names, kexec.TarballName)
		}
		m := newManifest("kexec-tree", o.ToolVersion, c, o.InitrdOptions, ir)
		m.Inputs.Kernel = kernel
		m.Inputs.Initrd = strings.Join(o.Bases, " ")
		m.Inputs.Cmdline = cmdline
		if err := m.addOutputs(tmp, names...); err != nil {
			return err
		}
		m.Timings.Squashfs = seconds(imageTime)
		m.Timings.Total = seconds(time.Since(start))
		res.Manifest = m
		return m.write(tmp)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// writeTarball writes dir/kexec.tar.gz of the tree in dir.
func writeTarball(ctx context.Context, dir string, mtime time.Time) error {
	name := filepath.Join(dir, kexec.TarballName)
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := kexec.WriteTarball(ctx, f, dir, mtime); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", kexec.TarballName, err)
	}
	return nil
}
