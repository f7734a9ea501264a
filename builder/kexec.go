package builder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nbimg/nbimg/nixstore"

	"github.com/nbimg/nbimg/kexec"
)

// KexecOptions configure KexecTree.
type KexecOptions struct {
	BootOptions
	Tarball bool // also write kexec.tar.gz of the tree
}

// KexecTree writes dir with bzImage, initrd.gz (the base initrds followed
// by the store image, as Netboot writes initrd), kexec-boot and
// manifest.json, and with o.Tarball kexec.tar.gz holding the first three
// under kexec/ (dated the store image's time). dir is replaced whole, or
// left alone on failure.
func KexecTree(ctx context.Context, c *nixstore.Closure, dir string, o KexecOptions) (*BootResult, error) {
	top := c.Toplevel
	if top == nil {
		return nil, ErrNoToplevel
	}
	script := kexec.Script{
		Init:         top.InitArg(),
		KernelParams: strings.Join(top.KernelParams, " "),
		Cmdline:      netStoreCmdline(o.BootOptions),
		Label:        top.Label,
	}
	text, err := script.Text()
	if err != nil {
		return nil, err
	}
	cmdline, _ := script.CommandLine()
	t := bootTree{
		command:    "kexec-tree",
		kernelName: kexec.KernelName, initrdName: kexec.InitrdName, scriptName: kexec.ScriptName,
		script: text, scriptMode: 0o755, cmdline: cmdline,
	}
	if o.Tarball {
		t.extra = func(tmp string, ir *InitrdResult) ([]string, error) {
			if o.Logf != nil {
				o.Logf("tarball %s", kexec.TarballName)
			}
			return []string{kexec.TarballName}, writeTarball(ctx, tmp, time.Unix(ir.Image.MkfsTime, 0))
		}
	}
	return writeBootTree(ctx, c, dir, o.BootOptions, t)
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
