package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nbimg/nbimg/internal/atomicfile"
	"github.com/nbimg/nbimg/nixstore"

	"github.com/nbimg/nbimg/initrd"
	"github.com/nbimg/nbimg/netboot"
)

// BootOptions configure the commands that write a kernel and an initrd
// carrying the store image (Netboot, KexecTree).
type BootOptions struct {
	InitrdOptions
	Kernel      string // host path of the kernel; "" takes the toplevel's
	Cmdline     string // extra kernel parameters for the boot script
	ToolVersion string // recorded in the manifest
	Timings     bool   // record wall-clock timings in the manifest
	// NetStore, when set, serves the store image over the network: it is
	// written beside the kernel and the initrd carries stage 0 instead.
	NetStore *NetStore
	// UKI, when set, makes Netboot also write nixos.efi, a Unified Kernel
	// Image of the same kernel, initrd and command line.
	UKI *UKIOptions
}

// BootResult describes a written boot directory.
type BootResult struct {
	InitrdResult
	Manifest *Manifest
}

// ErrNoToplevel is returned by commands that need a NixOS system.
var ErrNoToplevel = errors.New("builder: this command needs a NixOS system: pass --toplevel")

// bootTree is a directory holding a kernel, an initrd carrying the store
// image, a boot script, and manifest.json.
type bootTree struct {
	command                            string // recorded in the manifest
	kernelName, initrdName, scriptName string
	script                             []byte
	scriptMode                         os.FileMode
	cmdline                            string // the kernel command line the script passes
	// extra, when set, writes more files into the tree once the others are
	// there and returns their names.
	extra func(tmp string, ir *InitrdResult) ([]string, error)
}

// writeBootTree writes t at dir: the kernel (o.Kernel or the toplevel's),
// the base initrds (o.Bases or the toplevel's) followed by the store image,
// the script, t.extra's files and the manifest. dir is replaced whole, or
// left alone on failure.
func writeBootTree(ctx context.Context, c *nixstore.Closure, dir string, o BootOptions, t bootTree) (*BootResult, error) {
	start := time.Now()
	top := c.Toplevel
	if top == nil {
		return nil, ErrNoToplevel
	}
	logf := logOrDiscard(o.Logf)
	kernel := o.Kernel
	if kernel == "" {
		kernel = c.HostPath(top.Kernel)
	} else if err := nixstore.CheckKernelFile(top.Arch, kernel); err != nil {
		return nil, err
	}
	if len(o.Bases) == 0 {
		o.Bases = []string{c.HostPath(top.Initrd)}
	}
	kernelWarning, err := checkKernel(kernel)
	if err != nil {
		return nil, err
	}
	res := &BootResult{}
	err = atomicfile.ReplaceDir(dir, func(tmp string) error {
		logf("kernel %s", kernel)
		if err := copyFile(filepath.Join(tmp, t.kernelName), kernel, 0o644); err != nil {
			return fmt.Errorf("kernel: %w", err)
		}
		f, err := os.OpenFile(filepath.Join(tmp, t.initrdName), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		imageStart := time.Now()
		var ir *InitrdResult
		var store *ManifestStore
		if o.NetStore != nil {
			ir, store, err = writeNetStore(ctx, tmp, f, c, o)
			if err == nil {
				ir.Store = store
			}
		} else {
			ir, err = WriteInitrd(ctx, f, c, o.InitrdOptions)
		}
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("initrd: %w", cerr)
		}
		if err != nil {
			return err
		}
		if kernelWarning != "" {
			ir.Warnings = append([]string{kernelWarning}, ir.Warnings...)
		}
		imageTime := time.Since(imageStart)
		if err := os.WriteFile(filepath.Join(tmp, t.scriptName), t.script, t.scriptMode); err != nil {
			return err
		}
		names := []string{t.kernelName, t.initrdName, t.scriptName}
		if store != nil {
			names = append(names, store.File)
		}
		if t.extra != nil {
			more, err := t.extra(tmp, ir)
			if err != nil {
				return err
			}
			names = append(names, more...)
		}
		res.InitrdResult = *ir
		m := newManifest(t.command, o.ToolVersion, c, o.InitrdOptions, ir)
		m.Inputs.Kernel = kernel
		m.Inputs.Initrd = strings.Join(o.Bases, " ")
		m.Inputs.Cmdline = t.cmdline
		if store != nil {
			m.Store = store
			m.Settings.InitrdCompression = "gzip" // the stage-0 segment
		}
		if err := m.addOutputs(tmp, names...); err != nil {
			return err
		}
		m.recordTimings(o.Timings, imageTime, time.Since(start))
		res.Manifest = m
		return m.write(tmp)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Netboot writes dir with the kernel, initrd (the base initrds followed by
// the store image), netboot.ipxe and manifest.json, as NixOS's netboot
// module lays them out, and nixos.efi when o.UKI is set. The kernel file is
// named as nixpkgs names the system's (bzImage on x86_64, Image on
// aarch64), and netboot.ipxe loads it by that name. dir is replaced whole,
// or left alone on failure.
func Netboot(ctx context.Context, c *nixstore.Closure, dir string, o BootOptions) (*BootResult, error) {
	if c.Toplevel == nil {
		return nil, ErrNoToplevel
	}
	kernelName := c.Toplevel.Arch.KernelFile()
	script := netboot.IPXE{
		Kernel:       kernelName,
		Init:         c.Toplevel.InitArg(),
		KernelParams: strings.Join(c.Toplevel.KernelParams, " "),
		Cmdline:      netStoreCmdline(o),
	}
	text, err := script.Script()
	if err != nil {
		return nil, err
	}
	line, err := script.KernelCmdline()
	if err != nil {
		return nil, err
	}
	t := bootTree{
		command:    "netboot",
		kernelName: kernelName, initrdName: netboot.InitrdName, scriptName: netboot.ScriptName,
		script: text, scriptMode: 0o644, cmdline: line,
	}
	if o.UKI != nil {
		if _, err := ValidStub(c, o.UKI.Stub); err != nil {
			return nil, err // before the long part
		}
		t.extra = func(tmp string, ir *InitrdResult) ([]string, error) {
			// The UKI carries the tree's own kernel, initrd and command
			// line (with --store-url: the stage-0 initrd and rdinit=, and
			// for nbd:// the image's dm-verity root hash).
			_, _, warnings, err := writeUKI(ctx, filepath.Join(tmp, netboot.UKIName), c,
				filepath.Join(tmp, kernelName), filepath.Join(tmp, netboot.InitrdName), ukiNetStoreCmdline(o, ir.Store), *o.UKI)
			if err != nil {
				return nil, err
			}
			ir.Warnings = append(ir.Warnings, warnings...)
			return []string{netboot.UKIName}, nil
		}
	}
	return writeBootTree(ctx, c, dir, o, t)
}

// newManifest fills the parts of a manifest common to every command that
// writes an initrd.
func newManifest(command, version string, c *nixstore.Closure, o InitrdOptions, ir *InitrdResult) *Manifest {
	m := &Manifest{
		ManifestVersion: ManifestVersion,
		Tool:            strings.TrimSpace("nbimg " + version),
		Command:         command,
		Inputs: ManifestInputs{
			StorePaths: len(c.Paths),
			NarSize:    c.NarSize(),
		},
		Settings: ManifestSettings{
			InitrdCompression: o.Initrd.Compression.String(),
			ImageName:         o.Initrd.Name,
		},
	}
	if img := ir.Image; img != nil {
		m.Settings.Compressor = img.Compressor
		m.Settings.ZstdEncoder = img.Encoder
		m.Settings.BlockSize = img.BlockSize
		m.Settings.MkfsTime = img.MkfsTime
		m.Settings.Image = &ManifestImage{Format: img.Format, Size: img.OutputBytes}
		m.Cache = manifestCache(img)
	}
	if m.Settings.ImageName == "" {
		m.Settings.ImageName = initrd.DefaultName
	}
	if t := c.Toplevel; t != nil {
		m.Inputs.Toplevel = t.Path
		m.Inputs.Label = t.Label
		m.Inputs.Arch = string(t.Arch)
	}
	return m
}
