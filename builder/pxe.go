package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nbimg/nbimg/initrd"
	"github.com/nbimg/nbimg/internal/atomicfile"
	"github.com/nbimg/nbimg/nixstore"

	"github.com/nbimg/nbimg/netboot"
)

// PXEOptions configure PXE.
type PXEOptions struct {
	// Image and Initrd say how each system's store image is built and
	// appended; each system's base initrd is its toplevel's (Bases is
	// ignored).
	InitrdOptions
	Cmdline   string          // extra kernel parameters for every entry
	Serial    *netboot.Serial // serial console for pxelinux and the kernel; nil: none
	LogLevel  string          // kernel loglevel=, e.g. "7"; "" leaves the toplevel's
	ProxyNets []string        // networks for dnsmasq's proxy DHCP
	Syslinux  string          // directory with the syslinux files; "" is Debian's
	Title     string          // menu title; "" picks one
	Timeout   time.Duration   // before the first entry boots; 0 is netboot.DefaultMenuTimeout
	// ToolVersion is recorded in the manifest.
	ToolVersion string
	// Timings records wall-clock timings in the manifest.
	Timings bool
	// Substitute, when set, boots each system from a binary cache: its
	// initrd is the toplevel's own, without a store image, and its command
	// line carries Substitute.KernelParams for a stage 1 that substitutes
	// the closure onto the client's disk (see netboot.Substitute).
	Substitute *netboot.Substitute
}

// PXEResult describes a PXE directory.
type PXEResult struct {
	Systems  []InitrdResult // one per system, in menu order
	Manifest *Manifest
}

// MenuTitle returns the menu text of a system: its name and version and
// the start of its hash, e.g. "fixture 1.0 (5n0mckly)". The version is the
// toplevel's nixos-version file when it has one.
func MenuTitle(c *nixstore.Closure) string {
	t := c.Toplevel
	base := path.Base(t.Path)
	hash := base[:min(8, len(base))]
	name := strings.TrimPrefix(t.Label, "nixos-system-")
	if v := t.Version; v != "" {
		name = strings.TrimSuffix(name, "-"+v) + " " + v
	}
	return name + " (" + hash + ")"
}

// ErrDuplicateSystem is returned when PXE gets the same system twice.
var ErrDuplicateSystem = errors.New("builder: the same system is given twice")

// PXE writes dir for booting the systems over PXE, the first by default:
//
//	tftp/pxelinux.0, ldlinux.c32, menu.c32, libutil.c32   syslinux's
//	tftp/pxelinux.cfg/default   the pxelinux menu
//	tftp/<toplevel>/bzImage     each system's kernel
//	tftp/<toplevel>/initrd      its initrd followed by its store image
//	                            (with o.Substitute, its initrd alone)
//	boot.ipxe                   the same menu for iPXE, files under tftp/
//	dnsmasq.conf                TFTP from dir/tftp (its final absolute
//	                            path), proxy DHCP on o.ProxyNets
//	manifest.json
//
// <toplevel> is the base name of the system's store path. Each closure
// must have a Toplevel. dir is replaced whole, or left alone on failure.
func PXE(ctx context.Context, systems []*nixstore.Closure, dir string, o PXEOptions) (*PXEResult, error) {
	start := time.Now()
	if len(systems) == 0 {
		return nil, ErrNoToplevel
	}
	logf := logOrDiscard(o.Logf)
	syslinux, err := netboot.FindSyslinux(o.Syslinux)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	extra := []string{}
	if o.Serial != nil {
		extra = append(extra, o.Serial.KernelParam())
	}
	if o.LogLevel != "" {
		if n, err := strconv.Atoi(o.LogLevel); err != nil || n < 0 || n > 7 {
			return nil, fmt.Errorf("loglevel %q: want a number from 0 to 7", o.LogLevel)
		}
		extra = append(extra, "loglevel="+o.LogLevel)
	}
	if s := strings.TrimSpace(o.Cmdline); s != "" {
		extra = append(extra, s)
	}
	if o.Substitute != nil {
		if err := o.Substitute.Check(); err != nil {
			return nil, err
		}
	}
	menu := netboot.Menu{Title: o.Title, Timeout: o.Timeout, Serial: o.Serial}
	if menu.Title == "" {
		menu.Title = "NixOS network boot"
	}
	seen := map[string]int{}
	for i, c := range systems {
		top := c.Toplevel
		if top == nil {
			return nil, ErrNoToplevel
		}
		if j, dup := seen[top.Path]; dup {
			return nil, fmt.Errorf("%w: systems %d and %d are both %s", ErrDuplicateSystem, j+1, i+1, top.Path)
		}
		seen[top.Path] = i
		cmd := extra
		if o.Substitute != nil {
			cmd = append(slices.Clone(extra), o.Substitute.KernelParams(top.Path))
		}
		menu.Entries = append(menu.Entries, netboot.Entry{
			Title:        MenuTitle(c),
			Dir:          path.Base(top.Path),
			Init:         top.InitArg(),
			KernelParams: strings.Join(top.KernelParams, " "),
			Cmdline:      strings.Join(cmd, " "),
		})
	}
	cfg, err := menu.PXELinux()
	if err != nil {
		return nil, err
	}
	ipxe, err := menu.IPXE(netboot.TFTPDir)
	if err != nil {
		return nil, err
	}
	dnsmasq, err := netboot.Dnsmasq{
		TFTPRoot:  filepath.Join(abs, netboot.TFTPDir),
		ProxyNets: o.ProxyNets,
		MenuText:  menu.Title,
	}.Config()
	if err != nil {
		return nil, err
	}

	res := &PXEResult{}
	err = atomicfile.ReplaceDir(abs, func(tmp string) error {
		tftp := filepath.Join(tmp, netboot.TFTPDir)
		if err := os.MkdirAll(filepath.Join(tftp, path.Dir(netboot.PXELinuxConfig)), 0o755); err != nil {
			return err
		}
		var names []string
		for _, n := range netboot.SyslinuxFiles {
			logf("%s from %s", n, syslinux[n])
			if err := copyFile(filepath.Join(tftp, n), syslinux[n], 0o644); err != nil {
				return fmt.Errorf("syslinux: %w", err)
			}
			names = append(names, netboot.TFTPDir+"/"+n)
		}
		var imageTime time.Duration
		m := &Manifest{}
		for i, c := range systems {
			e := menu.Entries[i]
			top := c.Toplevel
			edir := filepath.Join(tftp, e.Dir)
			if err := os.Mkdir(edir, 0o755); err != nil {
				return err
			}
			kernel := c.HostPath(top.Kernel)
			logf("%s: kernel %s", netboot.EntryLabel(i), kernel)
			if err := copyFile(filepath.Join(edir, netboot.KernelName), kernel, 0o644); err != nil {
				return fmt.Errorf("kernel: %w", err)
			}
			f, err := os.OpenFile(filepath.Join(edir, netboot.InitrdName), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return err
			}
			iopts := o.InitrdOptions
			iopts.Bases = []string{c.HostPath(top.Initrd)}
			imageStart := time.Now()
			var ir *InitrdResult
			if o.Substitute != nil {
				ir, err = copyBaseInitrd(f, iopts.Bases[0])
			} else {
				ir, err = WriteInitrd(ctx, f, c, iopts)
			}
			if cerr := f.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("initrd: %w", cerr)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", top.Path, err)
			}
			imageTime += time.Since(imageStart)
			res.Systems = append(res.Systems, *ir)
			if i == 0 {
				m = newManifest("pxe", o.ToolVersion, c, iopts, ir)
				m.Inputs.Kernel = kernel
				m.Inputs.Initrd = iopts.Bases[0]
				m.Inputs.Cmdline = menu.CommandLine(0)
			}
			rel := netboot.TFTPDir + "/" + e.Dir
			m.Entries = append(m.Entries, ManifestEntry{
				Name: netboot.EntryLabel(i), Title: e.Title, Dir: rel, Toplevel: top.Path,
				StorePaths: len(c.Paths), NarSize: c.NarSize(), MkfsTime: mkfsTime(ir),
				Cmdline: menu.CommandLine(i),
			})
			names = append(names, rel+"/"+netboot.KernelName, rel+"/"+netboot.InitrdName)
		}
		for _, f := range []struct {
			name string
			data []byte
		}{
			{netboot.TFTPDir + "/" + netboot.PXELinuxConfig, cfg},
			{netboot.MenuName, ipxe},
			{netboot.DnsmasqName, dnsmasq},
		} {
			if err := os.WriteFile(filepath.Join(tmp, filepath.FromSlash(f.name)), f.data, 0o644); err != nil {
				return err
			}
			names = append(names, f.name)
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

// copyBaseInitrd writes the toplevel's initrd as it is: a system booted
// from a binary cache has no store image.
func copyBaseInitrd(f *os.File, base string) (*InitrdResult, error) {
	in, err := os.Open(base)
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	defer in.Close()
	n, err := io.Copy(f, in)
	if err != nil {
		return nil, fmt.Errorf("initrd: copying %s: %w", base, err)
	}
	return &InitrdResult{Initrd: &initrd.Result{Size: n, Bases: []int64{n}, SegmentOffset: -1}}, nil
}

// mkfsTime is the store image's time, or 0 without one.
func mkfsTime(ir *InitrdResult) int64 {
	if ir.Image == nil {
		return 0
	}
	return ir.Image.MkfsTime
}
