// Package nfsroot writes what a Raspberry Pi needs to boot NixOS from the
// network with its root file system on NFS, as raspberry-pi-nix's
// net-image module lays it out:
//
//	boot/          served by TFTP: firmware, config.txt, cmdline.txt, the
//	               kernel under the name the model's firmware loads, the
//	               initrd, device trees and overlays; with serial numbers,
//	               a copy of all that in boot/<serial>/
//	os/<name>/     the NFS root: nix/store with the closure,
//	               nix-path-registration, boot/firmware (a copy of boot/),
//	               sbin/init leading to the system's init, and the empty
//	               directories a root file system needs
//	exports        an /etc/exports line for the NFS root
//	dnsmasq.conf   proxy DHCP and TFTP for the Pi bootloader
//
// The text files come from Config, Cmdline, Exports and Dnsmasq; the two
// trees from WriteBoot and WriteRoot, into empty directories. Landing the
// whole atomically is the caller's part (builder.PiNetImage fills a
// temporary directory and renames it).
//
// The store is copied, never hard-linked, so the NFS export may be on
// another file system than the store it came from. Copies follow the Nix
// store's conventions, which `nix-store --verify --check-contents` and a
// booted NixOS expect: regular files 0444, or 0555 when any execute bit is
// set, directories 0555, symlinks as they are, every modification time 1,
// and owner root when run as root (otherwise the running user, and
// WriteRoot says so). Identical files are copied separately.
//
// Limits: the kernel names, config.txt and the serial-number directories
// follow the Raspberry Pi firmware documentation for the Pi 3, 4 and 5
// booting a 64-bit kernel; other models and 32-bit kernels are not
// covered. The system's own initrd must mount the NFS root from the
// command line (raspberry-pi-nix's net-image configuration makes it do
// so), and the system must load nix-path-registration, which is at the
// root of the file system as there, not in nix/store as in NixOS's
// netboot image. cmdline.txt asks for NFSv3 as raspberry-pi-nix does; the server
// must then also run rpcbind and a mount daemon (NFSv4 clients need only
// port 2049). Only regular files, directories and symlinks can be copied:
// a Nix store holds nothing else.
package nfsroot

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strings"
	"unicode"

	"github.com/nbimg/nbimg/cmdline"
	"github.com/nbimg/nbimg/netboot"
)

// Errors for settings that cannot go in the written files.
var (
	ErrBadModel  = errors.New("nfsroot: unknown Raspberry Pi model")
	ErrBadNFS    = errors.New("nfsroot: invalid NFS root")
	ErrBadText   = errors.New("nfsroot: invalid setting")
	ErrBadSerial = errors.New("nfsroot: invalid serial number")
)

// Model is a Raspberry Pi model family, as --model names it.
type Model string

// The models nfsroot knows.
const (
	Pi3 Model = "pi3"
	Pi4 Model = "pi4"
	Pi5 Model = "pi5"
)

// Models lists the known models.
func Models() []Model { return []Model{Pi3, Pi4, Pi5} }

// ParseModel checks a --model value.
func ParseModel(s string) (Model, error) {
	for _, m := range Models() {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("%w %q: want pi3, pi4 or pi5", ErrBadModel, s)
}

// KernelName returns the file name the model's firmware loads a 64-bit
// kernel from when config.txt names none: kernel8.img on the Pi 3 and 4,
// kernel_2712.img on the Pi 5.
func (m Model) KernelName() string {
	if m == Pi5 {
		return "kernel_2712.img"
	}
	return "kernel8.img"
}

// FirmwareFiles returns the firmware files the model's boot needs in
// boot/: the Pi 3 boot ROM loads bootcode.bin, then start.elf and
// fixup.dat; the Pi 4 bootloader (in EEPROM) loads start4.elf and
// fixup4.dat; the Pi 5's firmware is all in its EEPROM.
func (m Model) FirmwareFiles() []string {
	switch m {
	case Pi3:
		return []string{"bootcode.bin", "start.elf", "fixup.dat"}
	case Pi4:
		return []string{"start4.elf", "fixup4.dat"}
	}
	return nil
}

// DTBPrefixes returns the prefixes of the device-tree file names the
// model's firmware looks for (downstream and mainline kernel names).
func (m Model) DTBPrefixes() []string {
	switch m {
	case Pi3:
		return []string{"bcm2710-rpi-3", "bcm2837-rpi-3"}
	case Pi4:
		return []string{"bcm2711-rpi-4"}
	}
	return []string{"bcm2712-rpi-5"}
}

// InitrdName is the initrd's file name in boot/.
const InitrdName = "initrd"

// File names of the outputs.
const (
	ConfigName  = "config.txt"
	CmdlineName = "cmdline.txt"
	ExportsName = "exports"
	DnsmasqName = "dnsmasq.conf"
)

// Config is config.txt: the firmware settings that boot a 64-bit kernel
// with an initrd.
type Config struct {
	Model Model
	// UART turns on the serial console (enable_uart=1).
	UART bool
}

// Text returns config.txt.
func (c Config) Text() ([]byte, error) {
	if _, err := ParseModel(string(c.Model)); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Raspberry Pi %s firmware settings, written by nbimg pi-netimage.\n", strings.TrimPrefix(string(c.Model), "pi"))
	b.WriteString("# A 64-bit kernel, and the initrd loaded into memory right after it.\n")
	b.WriteString("arm_64bit=1\n")
	fmt.Fprintf(&b, "kernel=%s\n", c.Model.KernelName())
	fmt.Fprintf(&b, "initramfs %s followkernel\n", InitrdName)
	if c.UART {
		b.WriteString("# Serial console on the GPIO header (GPIO 14 and 15).\n")
		b.WriteString("enable_uart=1\n")
	} else {
		b.WriteString("enable_uart=0\n")
	}
	return []byte(b.String()), nil
}

// NFSRoot is the server and exported path of an NFS root, HOST:/PATH.
type NFSRoot struct {
	Host string
	Path string
}

func (r NFSRoot) String() string { return r.Host + ":" + r.Path }

// ParseNFSRoot checks a --nfs-root value, HOST:/PATH. HOST is a name or an
// IPv4 address (the kernel's nfsroot= takes an address; a name is left for
// the initrd to resolve); PATH is absolute.
func ParseNFSRoot(s string) (NFSRoot, error) {
	host, p, ok := strings.Cut(s, ":")
	switch {
	case !ok || host == "":
		return NFSRoot{}, fmt.Errorf("%w %q: want HOST:/PATH, e.g. 192.168.1.2:/srv/nfs/nixos", ErrBadNFS, s)
	case !path.IsAbs(p):
		return NFSRoot{}, fmt.Errorf("%w %q: the path after %q must be absolute", ErrBadNFS, s, host+":")
	case hasSpaceOrControl(s) || strings.ContainsAny(s, ",\"'"):
		return NFSRoot{}, fmt.Errorf("%w %q: no spaces, commas or quotes allowed", ErrBadNFS, s)
	}
	if a, err := netip.ParseAddr(host); err == nil && !a.Is4() {
		return NFSRoot{}, fmt.Errorf("%w %q: the kernel's nfsroot= takes an IPv4 address or a name", ErrBadNFS, s)
	}
	return NFSRoot{Host: host, Path: path.Clean(p)}, nil
}

// Cmdline is cmdline.txt, the kernel command line of an NFS root:
//
//	root=/dev/nfs nfsroot=HOST:/PATH,vers=3[,OPTIONS] rw ip=dhcp rootwait init=INIT KERNEL-PARAMS EXTRA
type Cmdline struct {
	Root NFSRoot
	// Options are more NFS mount options, after vers=3 (e.g. "proto=tcp").
	Options string
	// Init is the stage-2 init, <toplevel>/init.
	Init string
	// KernelParams are the toplevel's kernel-params.
	KernelParams string
	// Extra are more parameters, last.
	Extra string
}

// Text returns cmdline.txt: one line, ending with a newline.
func (c Cmdline) Text() ([]byte, error) {
	if c.Root.Host == "" || c.Root.Path == "" {
		return nil, fmt.Errorf("%w: no NFS root given", ErrBadNFS)
	}
	if _, err := ParseNFSRoot(c.Root.String()); err != nil {
		return nil, err
	}
	if strings.ContainsAny(c.Options, "\n\r\x00") {
		return nil, fmt.Errorf("%w: NFS options %q have a line break or NUL", ErrBadText, c.Options)
	}
	if err := CheckNFSOptions(c.Options); err != nil {
		return nil, err
	}
	opts := strings.Trim(strings.TrimSpace(c.Options), ",")
	nfsroot := c.Root.String() + ",vers=3"
	if opts != "" {
		nfsroot += "," + opts
	}
	line, err := cmdline.Line{
		Pre:          []string{"root=/dev/nfs", "nfsroot=" + nfsroot, "rw", "ip=dhcp", "rootwait"},
		Init:         c.Init,
		KernelParams: c.KernelParams,
		Extra:        []string{c.Extra},
	}.String()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadText, err)
	}
	return []byte(line + "\n"), nil
}

// CheckNFSOptions checks --nfs-options: comma-separated mount options
// without white space, and not the NFS version, which cmdline.txt fixes.
func CheckNFSOptions(s string) error {
	opts := strings.Trim(strings.TrimSpace(s), ",")
	if hasSpaceOrControl(opts) || strings.ContainsAny(opts, "\"'") {
		return fmt.Errorf("%w: NFS options %q have white space or quotes", ErrBadText, s)
	}
	for _, o := range strings.Split(opts, ",") {
		switch k, _, _ := strings.Cut(o, "="); k {
		case "vers", "nfsvers", "v2", "v3", "v4", "v4.0", "v4.1", "v4.2":
			return fmt.Errorf("%w: NFS options %q set the version: cmdline.txt always asks for vers=3", ErrBadText, s)
		}
	}
	return nil
}

// Exports is the /etc/exports line that shares the NFS root read-write
// with root access kept (the booted system runs as root on it).
type Exports struct {
	Path string
	// Clients is who may mount it, in exports(5) syntax; "" is everyone
	// ("*").
	Clients string
}

// Text returns the exports file: a comment and one line.
func (e Exports) Text() ([]byte, error) {
	if !path.IsAbs(e.Path) {
		return nil, fmt.Errorf("%w: export path %q is not absolute", ErrBadText, e.Path)
	}
	clients := e.Clients
	if clients == "" {
		clients = "*"
	}
	if strings.ContainsAny(e.Path, " \t\n\r\x00\"") || strings.ContainsAny(clients, " \t\n\r\x00()") {
		return nil, fmt.Errorf("%w: export %q for %q has white space, quotes or parentheses", ErrBadText, e.Path, clients)
	}
	return []byte("# The NFS root, written by nbimg pi-netimage: add to /etc/exports, then run exportfs -ra.\n" +
		e.Path + " " + clients + "(rw,sync,no_subtree_check,no_root_squash)\n"), nil
}

// Dnsmasq is a dnsmasq configuration for Raspberry Pi network boot: TFTP
// from TFTPRoot and proxy DHCP answering the Pi bootloader's PXE request
// with "Raspberry Pi Boot", leaving addresses to the network's DHCP server.
type Dnsmasq struct {
	// TFTPRoot is the absolute path of the boot/ directory as served.
	TFTPRoot string
	// ProxyRanges are dnsmasq dhcp-range values for proxy DHCP, as
	// netboot.ParseProxyNet makes them ("192.168.1.0,proxy"). Without any,
	// the configuration only serves TFTP.
	ProxyRanges []string
}

// Text returns dnsmasq.conf.
func (d Dnsmasq) Text() ([]byte, error) {
	if !path.IsAbs(d.TFTPRoot) {
		return nil, fmt.Errorf("%w: TFTP root %q is not an absolute path", ErrBadText, d.TFTPRoot)
	}
	root, err := netboot.DnsmasqQuote(d.TFTPRoot)
	if err != nil {
		return nil, fmt.Errorf("%w: TFTP root: %w", ErrBadText, err)
	}
	for _, r := range d.ProxyRanges {
		if !strings.Contains(r, ",proxy") || strings.ContainsAny(r, " \t\n\r\x00") {
			return nil, fmt.Errorf("%w: %q is not a proxy dhcp-range", ErrBadText, r)
		}
	}
	var b strings.Builder
	b.WriteString("# dnsmasq configuration written by nbimg pi-netimage: TFTP for boot/ and\n")
	b.WriteString("# proxy DHCP that answers the Raspberry Pi bootloader, leaving addresses to\n")
	b.WriteString("# the network's DHCP server. Run as root: dnsmasq -d -C dnsmasq.conf\n")
	b.WriteString("\n# No DNS.\nport=0\n")
	b.WriteString("log-dhcp\n")
	b.WriteString("\nenable-tftp\n")
	fmt.Fprintf(&b, "tftp-root=%s\n", root)
	if len(d.ProxyRanges) == 0 {
		b.WriteString("\n# No --proxy-net given: TFTP only. Have your DHCP server send this host as\n")
		b.WriteString("# the TFTP server (option 66) and \"Raspberry Pi Boot\" in option 43.\n")
	} else {
		b.WriteString("\n# Proxy DHCP on these networks.\n")
		for _, r := range d.ProxyRanges {
			fmt.Fprintf(&b, "dhcp-range=%s\n", r)
		}
	}
	b.WriteString("\n# The Pi bootloader looks for this text in the PXE reply.\n")
	b.WriteString("pxe-service=0,\"Raspberry Pi Boot\"\n")
	return []byte(b.String()), nil
}

// ParseSerial checks a --serial value: the 8 hexadecimal digits the Pi
// bootloader puts before each TFTP file name (the last 8 digits of Serial
// in /proc/cpuinfo). It returns them in lower case, as the bootloader asks.
func ParseSerial(s string) (string, error) {
	if len(s) != 8 {
		return "", fmt.Errorf("%w %q: want the 8 hexadecimal digits the bootloader asks for (the last 8 of Serial in /proc/cpuinfo)", ErrBadSerial, s)
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return "", fmt.Errorf("%w %q: %q is not a hexadecimal digit", ErrBadSerial, s, c)
		}
	}
	return strings.ToLower(s), nil
}

// DefaultName is the NFS root's directory name as raspberry-pi-nix's
// net-image names it: nixos-net-image-<label>-<system>, with the label
// from the toplevel's nixos-version and the system from its system file.
func DefaultName(version, system string) (string, error) {
	version, system = strings.TrimSpace(version), strings.TrimSpace(system)
	if version == "" || system == "" {
		return "", fmt.Errorf("%w: no NixOS version or system to name the root after", ErrBadText)
	}
	name := "nixos-net-image-" + version + "-" + system
	if err := CheckName(name); err != nil {
		return "", err
	}
	return name, nil
}

// CheckName checks the NFS root's directory name (--name).
func CheckName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00\n\r \t,:") {
		return fmt.Errorf("%w: root name %q must be one path element without spaces, commas or colons", ErrBadText, name)
	}
	return nil
}

// hasSpaceOrControl reports whether s has white space or control
// characters, which would split or break a line.
func hasSpaceOrControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0
}
