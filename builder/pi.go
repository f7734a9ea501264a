package builder

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nbimg/nbimg/internal/atomicfile"
	"github.com/nbimg/nbimg/nixstore"

	"github.com/nbimg/nbimg/nfsroot"
)

// PiOptions configure PiNetImage.
type PiOptions struct {
	Model      nfsroot.Model
	NFSRoot    nfsroot.NFSRoot // where the Pi mounts os/<Name> from
	NFSOptions string          // more NFS mount options for cmdline.txt
	Cmdline    string          // extra kernel parameters, last in cmdline.txt
	Name       string          // the root's directory name; "" is nfsroot.DefaultName's
	Firmware   string          // host directory with the firmware; "" looks in the toplevel
	Kernel     string          // host path of the kernel; "" takes the toplevel's
	Initrd     string          // host path of the initrd; "" takes the toplevel's
	Serials    []string        // serial numbers (nfsroot.ParseSerial) for boot/<serial>/
	UART       bool            // enable_uart=1 in config.txt
	// TFTPRoot is boot/'s path as dnsmasq serves it; "" is the absolute
	// path of <dir>/boot.
	TFTPRoot string
	// ProxyRanges are dnsmasq proxy dhcp-ranges (netboot.ParseProxyNet).
	ProxyRanges []string
	// ExportClients is who may mount the root, in exports(5) syntax.
	ExportClients string
	ToolVersion   string
	Timings       bool // record wall-clock timings in the manifest
	// Logf, when set, receives a line per step; Progress the store copy's.
	Logf     func(format string, args ...any)
	Progress func(done, total int)
}

// PiResult describes a written Pi network image.
type PiResult struct {
	Name     string // the root's directory name, under os/
	Boot     *nfsroot.BootResult
	Root     *nfsroot.RootStats
	Manifest *Manifest
}

// PiFirmwareLink is the toplevel entry PiNetImage looks into for the Pi
// firmware when no firmware directory is given.
const PiFirmwareLink = "firmware"

// PiNetImage writes dir as raspberry-pi-nix's net-image lays it out (see
// package nfsroot): boot/ for TFTP, os/<name>/ as the NFS root, exports,
// dnsmasq.conf and manifest.json. Everything is copied by nbimg; dir is
// replaced whole, or left alone on failure.
func PiNetImage(ctx context.Context, c *nixstore.Closure, dir string, o PiOptions) (*PiResult, error) {
	start := time.Now()
	top := c.Toplevel
	if top == nil {
		return nil, ErrNoToplevel
	}
	logf := logOrDiscard(o.Logf)
	if top.Arch != nixstore.ArchAArch64 {
		logf("warning: %s is an %s system: a Raspberry Pi's firmware boots only an aarch64 kernel as %s", top.Path, top.Arch, o.Model.KernelName())
	}
	name := o.Name
	if name == "" {
		var err error
		if name, err = piDefaultName(c); err != nil {
			return nil, err
		}
	} else if err := nfsroot.CheckName(name); err != nil {
		return nil, err
	}
	firmware := o.Firmware
	if firmware != "" {
		abs, err := filepath.Abs(firmware)
		if err != nil {
			return nil, fmt.Errorf("firmware: %w", err)
		}
		firmware = abs
	} else {
		firmware = toplevelFirmware(c)
		if firmware != "" {
			logf("firmware from the toplevel: %s", firmware)
		}
	}
	kernel, initrd := o.Kernel, o.Initrd
	if kernel == "" {
		kernel = c.HostPath(top.Kernel)
	} else if err := nixstore.CheckKernelFile(top.Arch, kernel); err != nil {
		return nil, err
	}
	if initrd == "" {
		initrd = c.HostPath(top.Initrd)
	}
	dtbs := ""
	if top.DTBs != "" {
		dtbs = c.HostPath(top.DTBs)
	}
	configTxt, err := nfsroot.Config{Model: o.Model, UART: o.UART}.Text()
	if err != nil {
		return nil, err
	}
	cmdlineTxt, err := nfsroot.Cmdline{
		Root:         o.NFSRoot,
		Options:      o.NFSOptions,
		Init:         top.InitArg(),
		KernelParams: strings.Join(top.KernelParams, " "),
		Extra:        o.Cmdline,
	}.Text()
	if err != nil {
		return nil, err
	}
	exports, err := nfsroot.Exports{Path: o.NFSRoot.Path, Clients: o.ExportClients}.Text()
	if err != nil {
		return nil, err
	}
	tftpRoot := o.TFTPRoot
	if tftpRoot == "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("output directory: %w", err)
		}
		tftpRoot = filepath.Join(abs, "boot")
	}
	dnsmasq, err := nfsroot.Dnsmasq{TFTPRoot: tftpRoot, ProxyRanges: o.ProxyRanges}.Text()
	if err != nil {
		return nil, err
	}
	boot := nfsroot.Boot{
		Model:      o.Model,
		Kernel:     kernel,
		Initrd:     initrd,
		Firmware:   firmware,
		DTBs:       dtbs,
		ConfigTxt:  configTxt,
		CmdlineTxt: cmdlineTxt,
		Serials:    o.Serials,
	}
	// Check the boot files before copying the store.
	if _, _, err := boot.Plan(); err != nil {
		return nil, err
	}
	kernelWarning, err := checkKernel(kernel)
	if err != nil {
		return nil, err
	}

	res := &PiResult{Name: name}
	err = atomicfile.ReplaceDir(dir, func(tmp string) error {
		bootDir := filepath.Join(tmp, "boot")
		if err := os.Mkdir(bootDir, 0o755); err != nil {
			return err
		}
		br, err := nfsroot.WriteBoot(bootDir, boot)
		if err != nil {
			return err
		}
		res.Boot = br
		if kernelWarning != "" {
			br.Warnings = append([]string{kernelWarning}, br.Warnings...)
		}
		logf("boot/: %d files, device trees from %s", len(br.Files), br.DTBSource)
		rootDir := filepath.Join(tmp, "os", name)
		if err := os.MkdirAll(rootDir, 0o755); err != nil {
			return err
		}
		copyStart := time.Now()
		store := make([]nfsroot.StorePath, len(c.Paths))
		for i, p := range c.Paths {
			store[i] = nfsroot.StorePath{Path: p.Path, Host: c.HostPath(p.Path)}
		}
		rs, err := nfsroot.WriteRoot(ctx, rootDir, nfsroot.Root{
			Store:        store,
			Registration: c.Registration(),
			Init:         top.InitArg(),
			BootDir:      bootDir,
			BootFiles:    br.Files,
			Progress:     o.Progress,
		})
		if err != nil {
			return err
		}
		res.Root = rs
		copyTime := time.Since(copyStart)
		logf("os/%s: %d files (%d bytes), %d directories, %d symlinks in %s", name, rs.Files, rs.Bytes, rs.Dirs, rs.Symlinks, copyTime.Round(time.Millisecond))
		if err := os.Chmod(filepath.Join(tmp, "os"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, nfsroot.ExportsName), exports, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, nfsroot.DnsmasqName), dnsmasq, 0o644); err != nil {
			return err
		}

		m := &Manifest{
			ManifestVersion: ManifestVersion,
			Tool:            strings.TrimSpace("nbimg " + o.ToolVersion),
			Command:         "pi-netimage",
			Inputs: ManifestInputs{
				Toplevel:   top.Path,
				Label:      top.Label,
				Arch:       string(top.Arch),
				Kernel:     kernel,
				Initrd:     initrd,
				StorePaths: len(c.Paths),
				NarSize:    c.NarSize(),
				Cmdline:    strings.TrimSuffix(string(cmdlineTxt), "\n"),
			},
			Pi: &ManifestPi{
				Model:           string(o.Model),
				Name:            name,
				NFSRoot:         o.NFSRoot.String(),
				Kernel:          o.Model.KernelName(),
				Firmware:        br.FirmwareDir,
				DTBs:            br.DTBSource,
				Serials:         o.Serials,
				RootOwnedByRoot: rs.Owned,
			},
		}
		outs := []string{nfsroot.ExportsName, nfsroot.DnsmasqName, path.Join("os", name, "nix-path-registration")}
		for _, f := range br.Files {
			outs = append(outs, "boot/"+f)
		}
		sort.Strings(outs)
		if err := m.addOutputs(tmp, outs...); err != nil {
			return err
		}
		m.recordTimings(o.Timings, 0, time.Since(start))
		res.Manifest = m
		return m.write(tmp)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// piDefaultName names the root as raspberry-pi-nix does, from the
// toplevel's nixos-version and system files.
func piDefaultName(c *nixstore.Closure) (string, error) {
	top := c.Toplevel
	for _, f := range []struct{ name, v string }{{"nixos-version", top.Version}, {"system", top.System}} {
		if f.v == "" {
			return "", fmt.Errorf("toplevel %s has no %s to name the NFS root after: pass --name", top.Path, f.name)
		}
	}
	name, err := nfsroot.DefaultName(top.Version, top.System)
	if err != nil {
		return "", fmt.Errorf("toplevel %s: %w: pass --name", top.Path, err)
	}
	return name, nil
}

// toplevelFirmware returns the host directory of the toplevel's firmware
// entry when it holds Raspberry Pi firmware files, else "".
func toplevelFirmware(c *nixstore.Closure) string {
	if c.Toplevel.Firmware == "" {
		return ""
	}
	host := c.HostPath(c.Toplevel.Firmware)
	if !nfsroot.HasFirmware(host) {
		return ""
	}
	return host
}
