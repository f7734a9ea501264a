package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nbimg/nbimg/initrd"
	"github.com/nbimg/nbimg/internal/atomicfile"
	"github.com/nbimg/nbimg/netboot"
	"github.com/nbimg/nbimg/nixstore"
	"github.com/nbimg/nbimg/stage0"
	"github.com/nbimg/nbimg/uki"
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
	// NetStores, when set, serve each system's store image over the
	// network instead of carrying it in the initrd: the image is written
	// as tftp/<toplevel>/nix-store.squashfs, the initrd is the toplevel's
	// followed by the stage-0 segment, and the command line starts with
	// rdinit=. There is one per architecture of the systems (stage 0 is a
	// program of the client's architecture); each URL is the tree's base
	// URL, from which PXEStoreURL makes each system's.
	NetStores map[nixstore.Arch]*NetStore

	// UEFI says what UEFI clients boot: UEFINone (or "") nothing,
	// UEFIIPXE (x86-64 clients) iPXE's EFI build chaining tftp/boot.ipxe,
	// UEFIUKI each architecture's first system's UKI. aarch64 systems need
	// UEFIUKI: the menus are x86-only.
	UEFI string
	// IPXEDir holds iPXE's EFI build (snponly.efi or ipxe.efi); "" is
	// Debian's.
	IPXEDir string
	// HTTPBase, with UEFI set, adds UEFI HTTP boot answers for files
	// served under this URL (the tftp directory's contents).
	HTTPBase string
	// UKI says how the UKIs are made with UEFIUKI; each system gets
	// tftp/<toplevel>/nixos.efi. Its Stub is used for the systems of its
	// architecture; the others get FindStub's.
	UKI UKIOptions
}

// What PXE trees offer UEFI clients (PXEOptions.UEFI).
const (
	UEFINone = "none"
	UEFIIPXE = "ipxe"
	UEFIUKI  = "uki"
)

// Kinds of PXE clients in ManifestClient.Client.
const (
	ClientBIOS       = "bios"
	ClientEFIx64     = "x86_64-efi"
	ClientEFIAArch64 = "aarch64-efi"
)

// PXEResult describes a PXE directory.
type PXEResult struct {
	Systems  []InitrdResult // one per system, in the order given
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

// ErrPXEArch is wrapped by PXE's errors about a system no client of the
// tree could boot.
var ErrPXEArch = errors.New("builder: no PXE client of this tree can boot the system")

// PXEStoreURL returns the store URL of the system whose files are in
// tftp/<dir>/ of a tree written with base as its store URL (--store-url),
// dir escaped as a URL path element:
//
//	http(s)://HOST/PATH         http(s)://HOST/PATH/<dir>/nix-store.squashfs:
//	                            serve the tree's tftp directory at the base
//	nbd://HOST[:PORT][/PREFIX]  nbd://HOST[:PORT]/[PREFIX/]<dir>: one export
//	                            per system, named after its directory
func PXEStoreURL(base, dir string) (string, error) {
	u, err := stage0.ParseURL(base)
	if err != nil {
		return "", err
	}
	if strings.ContainsAny(base, "?#") {
		return "", fmt.Errorf("builder: store URL %q: a PXE tree's store URL is the base of every system's and takes no query or fragment", base)
	}
	if dir == "" || dir == "." || dir == ".." || strings.Contains(dir, "/") {
		return "", fmt.Errorf("builder: store URL: %q is not a system directory name", dir)
	}
	b := strings.TrimRight(base, "/") + "/" + url.PathEscape(dir)
	if u.Scheme != "nbd" {
		b += "/" + StoreImageName
	}
	if _, err := stage0.ParseURL(b); err != nil {
		return "", err
	}
	return b, nil
}

// pxeSystem is one system of a PXE tree as PXE plans it.
type pxeSystem struct {
	c     *nixstore.Closure
	arch  nixstore.Arch
	dir   string // under tftp/
	label string // menu label, or the name of an aarch64 system
	title string
	line  string // extra kernel parameters (rdinit= first with a network store)
	ns    *NetStore
	stub  string // the UKI stub; "" finds one
}

// PXE writes dir for booting the systems over PXE, the first of each
// architecture by default:
//
//	tftp/pxelinux.0, ldlinux.c32, menu.c32, libutil.c32   syslinux's
//	tftp/pxelinux.cfg/default   the pxelinux menu of the x86_64 systems
//	tftp/<toplevel>/bzImage     each x86_64 system's kernel (Image on aarch64)
//	tftp/<toplevel>/initrd      its initrd followed by its store image
//	                            (with o.Substitute, its initrd alone; with
//	                            o.NetStores, followed by stage 0)
//	tftp/<toplevel>/nix-store.squashfs   with o.NetStores: its store image
//	boot.ipxe                   the same menu for iPXE, files under tftp/
//	tftp/ipxe.efi, tftp/boot.ipxe   with UEFI "ipxe": iPXE's EFI build and
//	                            the iPXE menu it chains, files beside it
//	tftp/<toplevel>/nixos.efi   with UEFI "uki": each system's UKI
//	dnsmasq.conf                TFTP from dir/tftp (its final absolute
//	                            path), proxy DHCP on o.ProxyNets
//	manifest.json               with each system's architecture and files,
//	                            and the boot file of each kind of client
//
// <toplevel> is the base name of the system's store path. Each closure
// must have a Toplevel. BIOS clients and iPXE get the x86_64 systems;
// aarch64 systems boot only as UKIs (UEFI "uki"), and a tree without an
// x86_64 system has no pxelinux files and leaves BIOS clients unanswered.
// dir is replaced whole, or left alone on failure.
func PXE(ctx context.Context, systems []*nixstore.Closure, dir string, o PXEOptions) (*PXEResult, error) {
	start := time.Now()
	if len(systems) == 0 {
		return nil, ErrNoToplevel
	}
	logf := logOrDiscard(o.Logf)
	switch o.UEFI {
	case "", UEFINone:
		if o.HTTPBase != "" {
			return nil, fmt.Errorf("builder: an HTTP base URL needs UEFI boot files (UEFI %s or %s)", UEFIIPXE, UEFIUKI)
		}
	case UEFIIPXE, UEFIUKI:
	default:
		return nil, fmt.Errorf("builder: UEFI %q: want %s, %s or %s", o.UEFI, UEFINone, UEFIIPXE, UEFIUKI)
	}
	if o.Substitute != nil && o.NetStores != nil {
		return nil, errors.New("builder: a binary cache and a store served over the network do not go together: pick one")
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

	// Plan: each system's directory, label, command line and stub.
	sys := make([]pxeSystem, len(systems))
	var x86, arm []int // indexes into sys
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
		s := pxeSystem{c: c, arch: top.Arch, dir: path.Base(top.Path), title: MenuTitle(c)}
		switch top.Arch {
		case nixstore.ArchX86_64:
			s.label = netboot.EntryLabel(len(x86))
			x86 = append(x86, i)
		case nixstore.ArchAArch64:
			s.label = "nixos-aarch64-" + strconv.Itoa(len(arm)+1)
			arm = append(arm, i)
		default:
			return nil, fmt.Errorf("%w: %s is a %q system; PXE trees boot x86_64 and aarch64 systems", ErrPXEArch, top.Path, top.Arch)
		}
		cmd := extra
		if o.Substitute != nil {
			cmd = append(slices.Clone(extra), o.Substitute.KernelParams(top.Path))
		}
		s.line = strings.Join(cmd, " ")
		if o.NetStores != nil {
			base := o.NetStores[top.Arch]
			if base == nil {
				return nil, fmt.Errorf("builder: no stage 0 for the %s system %s", top.Arch, top.Path)
			}
			ns := *base
			if ns.URL, err = PXEStoreURL(base.URL, s.dir); err != nil {
				return nil, err
			}
			s.ns = &ns
			s.line = netStoreCmdline(BootOptions{NetStore: &ns, Cmdline: s.line})
		}
		sys[i] = s
	}
	if len(arm) > 0 && o.UEFI != UEFIUKI {
		return nil, fmt.Errorf("%w: %s is an aarch64 system, which arm64 UEFI clients boot as a UKI: add --uefi uki (pxelinux and the iPXE menus are x86-only)",
			ErrPXEArch, systems[arm[0]].Toplevel.Path)
	}
	var ipxeEFI string
	switch o.UEFI {
	case UEFIIPXE:
		if ipxeEFI, err = netboot.FindIPXEEFI(o.IPXEDir); err != nil {
			return nil, err
		}
	case UEFIUKI:
		if err := planStubs(sys, o.UKI.Stub); err != nil {
			return nil, err
		}
	}
	var syslinux map[string]string
	if len(x86) > 0 {
		if syslinux, err = netboot.FindSyslinux(o.Syslinux); err != nil {
			return nil, err
		}
	} else {
		logf("no x86_64 system: no pxelinux menu, BIOS clients get no answer")
	}

	// The menus (x86_64 systems) and dnsmasq.conf.
	menu := netboot.Menu{Title: o.Title, Timeout: o.Timeout, Serial: o.Serial}
	if menu.Title == "" {
		menu.Title = "NixOS network boot"
	}
	for _, i := range x86 {
		s := sys[i]
		menu.Entries = append(menu.Entries, netboot.Entry{
			Title:        s.title,
			Dir:          s.dir,
			Init:         s.c.Toplevel.InitArg(),
			KernelParams: strings.Join(s.c.Toplevel.KernelParams, " "),
			Cmdline:      s.line,
		})
	}
	var cfg, ipxe, tftpMenu []byte // tftpMenu: boot.ipxe in the TFTP root, for iPXE's EFI build
	if len(x86) > 0 {
		if cfg, err = menu.PXELinux(); err != nil {
			return nil, err
		}
		if ipxe, err = menu.IPXE(netboot.TFTPDir); err != nil {
			return nil, err
		}
	}
	dm := netboot.Dnsmasq{
		TFTPRoot:  filepath.Join(abs, netboot.TFTPDir),
		ProxyNets: o.ProxyNets,
		MenuText:  menu.Title,
		HTTPBase:  o.HTTPBase,
		NoBIOS:    len(x86) == 0,
	}
	var clients []ManifestClient
	if len(x86) > 0 {
		clients = append(clients, ManifestClient{Client: ClientBIOS, ClientArch: []int{netboot.ArchBIOS},
			Arch: string(nixstore.ArchX86_64), BootFile: netboot.TFTPDir + "/" + netboot.PXELinuxName})
	}
	efiArch := func(pxe, http int) []int {
		if o.HTTPBase != "" {
			return []int{pxe, http}
		}
		return []int{pxe}
	}
	switch o.UEFI {
	case UEFIIPXE:
		dm.EFIx64, dm.IPXEScript = netboot.IPXEEFIName, netboot.MenuName
		if tftpMenu, err = menu.IPXE(""); err != nil {
			return nil, err
		}
		clients = append(clients, ManifestClient{Client: ClientEFIx64,
			ClientArch: append([]int{netboot.ArchEFIx64BC}, efiArch(netboot.ArchEFIx64, netboot.ArchEFIx64HTTP)...),
			Arch:       string(nixstore.ArchX86_64), BootFile: netboot.TFTPDir + "/" + netboot.IPXEEFIName})
	case UEFIUKI:
		if len(x86) > 0 {
			s := sys[x86[0]]
			dm.EFIx64 = s.dir + "/" + netboot.UKIName
			clients = append(clients, ManifestClient{Client: ClientEFIx64,
				ClientArch: append([]int{netboot.ArchEFIx64BC}, efiArch(netboot.ArchEFIx64, netboot.ArchEFIx64HTTP)...),
				Arch:       string(s.arch), BootFile: netboot.TFTPDir + "/" + dm.EFIx64, Entry: s.label})
		}
		if len(arm) > 0 {
			s := sys[arm[0]]
			dm.EFIArm64 = s.dir + "/" + netboot.UKIName
			clients = append(clients, ManifestClient{Client: ClientEFIAArch64,
				ClientArch: efiArch(netboot.ArchEFIArm64, netboot.ArchEFIArm64HTTP),
				Arch:       string(s.arch), BootFile: netboot.TFTPDir + "/" + dm.EFIArm64, Entry: s.label})
		}
	}
	dnsmasq, err := dm.Config()
	if err != nil {
		return nil, err
	}

	res := &PXEResult{}
	err = atomicfile.ReplaceDir(abs, func(tmp string) error {
		tftp := filepath.Join(tmp, netboot.TFTPDir)
		if err := os.MkdirAll(tftp, 0o755); err != nil {
			return err
		}
		var names []string
		if len(x86) > 0 {
			if err := os.MkdirAll(filepath.Join(tftp, path.Dir(netboot.PXELinuxConfig)), 0o755); err != nil {
				return err
			}
			for _, n := range netboot.SyslinuxFiles {
				logf("%s from %s", n, syslinux[n])
				if err := copyFile(filepath.Join(tftp, n), syslinux[n], 0o644); err != nil {
					return fmt.Errorf("syslinux: %w", err)
				}
				names = append(names, netboot.TFTPDir+"/"+n)
			}
		}
		if ipxeEFI != "" {
			logf("%s from %s", netboot.IPXEEFIName, ipxeEFI)
			if err := copyFile(filepath.Join(tftp, netboot.IPXEEFIName), ipxeEFI, 0o644); err != nil {
				return fmt.Errorf("ipxe: %w", err)
			}
			names = append(names, netboot.TFTPDir+"/"+netboot.IPXEEFIName)
		}
		var imageTime time.Duration
		m := &Manifest{}
		for i, s := range sys {
			ir, entry, files, took, err := writePXESystem(ctx, tftp, s, o, logf)
			if err != nil {
				return fmt.Errorf("%s: %w", s.c.Toplevel.Path, err)
			}
			imageTime += took
			res.Systems = append(res.Systems, *ir)
			if i == 0 {
				iopts := o.InitrdOptions
				iopts.Bases = []string{s.c.HostPath(s.c.Toplevel.Initrd)}
				m = newManifest("pxe", o.ToolVersion, s.c, iopts, ir)
				m.Inputs.Kernel = s.c.HostPath(s.c.Toplevel.Kernel)
				m.Inputs.Initrd = iopts.Bases[0]
				m.Inputs.Cmdline = entry.Cmdline
				if o.NetStores != nil {
					m.Settings.InitrdCompression = "gzip" // the stage-0 segment
				}
			}
			m.Entries = append(m.Entries, *entry)
			names = append(names, files...)
		}
		m.Clients = clients
		if tftpMenu != nil {
			if err := os.WriteFile(filepath.Join(tftp, netboot.MenuName), tftpMenu, 0o644); err != nil {
				return err
			}
			names = append(names, netboot.TFTPDir+"/"+netboot.MenuName)
		}
		for _, f := range []struct {
			name string
			data []byte
		}{
			{netboot.TFTPDir + "/" + netboot.PXELinuxConfig, cfg},
			{netboot.MenuName, ipxe},
			{netboot.DnsmasqName, dnsmasq},
		} {
			if f.data == nil {
				continue // no x86_64 system: no menus
			}
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

// planStubs picks each system's UKI stub: stub for the systems of its
// architecture, FindStub's for the others, each checked before the long
// work. A stub that fits no system is an error.
func planStubs(sys []pxeSystem, stub string) error {
	var machine uint16
	if stub != "" {
		f, size, err := openRegular("stub", stub)
		if err != nil {
			return err
		}
		p, err := uki.Parse(f, size)
		f.Close()
		if err != nil {
			return fmt.Errorf("stub %s: %w", stub, err)
		}
		machine = p.Machine
	}
	used := stub == ""
	for i := range sys {
		s := &sys[i]
		if _, want, err := stubName(s.arch.System()); err == nil && stub != "" && want == machine {
			s.stub, used = stub, true
		}
		if _, err := ValidStub(s.c, s.stub); err != nil {
			return err
		}
	}
	if !used {
		_, err := ValidStub(sys[0].c, stub) // says whose architecture it is
		return err
	}
	return nil
}

// writePXESystem writes one system's files into tftp/<dir>/ and returns
// its initrd's description, its manifest entry (outputs not yet listed),
// the names of its files and the time its store image took.
func writePXESystem(ctx context.Context, tftp string, s pxeSystem, o PXEOptions, logf func(string, ...any)) (*InitrdResult, *ManifestEntry, []string, time.Duration, error) {
	c, top := s.c, s.c.Toplevel
	edir := filepath.Join(tftp, s.dir)
	if err := os.Mkdir(edir, 0o755); err != nil {
		return nil, nil, nil, 0, err
	}
	kernelName := s.arch.KernelFile()
	kernel := c.HostPath(top.Kernel)
	logf("%s: kernel %s", s.label, kernel)
	kernelWarning, err := checkKernel(kernel)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	if err := copyFile(filepath.Join(edir, kernelName), kernel, 0o644); err != nil {
		return nil, nil, nil, 0, fmt.Errorf("kernel: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(edir, netboot.InitrdName), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	iopts := o.InitrdOptions
	iopts.Bases = []string{c.HostPath(top.Initrd)}
	imageStart := time.Now()
	var ir *InitrdResult
	var store *ManifestStore
	switch {
	case o.Substitute != nil:
		ir, err = copyBaseInitrd(f, iopts.Bases[0])
	case s.ns != nil:
		ir, store, err = writeNetStore(ctx, edir, f, c, BootOptions{InitrdOptions: iopts, NetStore: s.ns})
	default:
		ir, err = WriteInitrd(ctx, f, c, iopts)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("initrd: %w", cerr)
	}
	if err != nil {
		return nil, nil, nil, 0, err
	}
	took := time.Since(imageStart)
	if kernelWarning != "" {
		ir.Warnings = append([]string{kernelWarning}, ir.Warnings...)
	}
	line, err := UKICmdline(c, s.line) // as the menus pass it, without initrd=
	if err != nil {
		return nil, nil, nil, 0, err
	}
	rel := netboot.TFTPDir + "/" + s.dir
	e := &ManifestEntry{
		Name: s.label, Title: s.title, Dir: rel, Toplevel: top.Path,
		StorePaths: len(c.Paths), NarSize: c.NarSize(), MkfsTime: mkfsTime(ir),
		Cmdline: line, Arch: string(s.arch),
		Kernel: rel + "/" + kernelName, Initrd: rel + "/" + netboot.InitrdName,
	}
	files := []string{e.Kernel, e.Initrd}
	if store != nil {
		store.File = rel + "/" + store.File
		e.Store = store
		files = append(files, store.File)
	}
	if o.UEFI == UEFIUKI {
		u := o.UKI
		u.Stub = s.stub
		_, _, warnings, err := writeUKI(ctx, filepath.Join(edir, netboot.UKIName), c,
			filepath.Join(edir, kernelName), filepath.Join(edir, netboot.InitrdName), withRootHash(s.line, store), u)
		if err != nil {
			return nil, nil, nil, 0, err
		}
		ir.Warnings = append(ir.Warnings, warnings...)
		e.UKI = rel + "/" + netboot.UKIName
		files = append(files, e.UKI)
	}
	return ir, e, files, took, nil
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
