package netboot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nbimg/nbimg/cmdline"
)

// Names in a PXE directory (see [Menu]).
const (
	// TFTPDir is the directory a TFTP server serves; it holds PXELinuxName,
	// the syslinux modules, PXELinuxConfig and one directory per entry.
	TFTPDir = "tftp"
	// PXELinuxName is the boot file PXE clients load.
	PXELinuxName = "pxelinux.0"
	// PXELinuxConfig is the menu pxelinux reads when no file names the
	// client more precisely.
	PXELinuxConfig = "pxelinux.cfg/default"
	// MenuName is the iPXE menu, beside TFTPDir.
	MenuName = "boot.ipxe"
	// DnsmasqName is the dnsmasq configuration, beside TFTPDir.
	DnsmasqName = "dnsmasq.conf"
)

// SyslinuxFiles are the syslinux files a PXE tree holds: pxelinux.0 and
// the BIOS modules its menu needs (ldlinux.c32 is the core pxelinux.0
// loads; menu.c32 draws the menu and needs libutil.c32).
var SyslinuxFiles = []string{PXELinuxName, "ldlinux.c32", "menu.c32", "libutil.c32"}

// DebianSyslinux says where Debian's packages install SyslinuxFiles: file
// name to path and package.
var DebianSyslinux = map[string]struct{ Path, Package string }{
	PXELinuxName:  {"/usr/lib/PXELINUX/pxelinux.0", "pxelinux"},
	"ldlinux.c32": {"/usr/lib/syslinux/modules/bios/ldlinux.c32", "syslinux-common"},
	"menu.c32":    {"/usr/lib/syslinux/modules/bios/menu.c32", "syslinux-common"},
	"libutil.c32": {"/usr/lib/syslinux/modules/bios/libutil.c32", "syslinux-common"},
}

// ErrNoSyslinux is wrapped by FindSyslinux's errors.
var ErrNoSyslinux = errors.New("netboot: syslinux files not found")

// FindSyslinux returns the host path of each of SyslinuxFiles: in dir when
// it is not empty (all four side by side, as in syslinux's bios/ build
// directory or a copy of Debian's files), else at Debian's locations.
func FindSyslinux(dir string) (map[string]string, error) {
	found := make(map[string]string, len(SyslinuxFiles))
	var missing, pkgs []string
	for _, name := range SyslinuxFiles {
		p := DebianSyslinux[name].Path
		if dir != "" {
			p = filepath.Join(dir, name)
		}
		st, err := os.Stat(p)
		switch {
		case err == nil && st.Mode().IsRegular():
			found[name] = p
			continue
		case err == nil:
			return nil, fmt.Errorf("%w: %s is not a regular file", ErrNoSyslinux, p)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("syslinux: %w", err)
		}
		missing = append(missing, p)
		if pkg := DebianSyslinux[name].Package; !slices.Contains(pkgs, pkg) {
			pkgs = append(pkgs, pkg)
		}
	}
	if len(missing) == 0 {
		return found, nil
	}
	if dir != "" {
		return nil, fmt.Errorf("%w: no %s in --syslinux %s (it needs %s)", ErrNoSyslinux,
			strings.Join(missing, ", "), dir, strings.Join(SyslinuxFiles, ", "))
	}
	return nil, fmt.Errorf("%w: no %s: install the Debian package%s %s, or pass --syslinux DIR",
		ErrNoSyslinux, strings.Join(missing, ", "), plural(len(pkgs)), strings.Join(pkgs, " and "))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// ErrBadMenu is returned for menus that cannot be written.
var ErrBadMenu = errors.New("netboot: invalid boot menu")

// Serial is a serial console: ttyS<Port> at Baud.
type Serial struct {
	Port int
	Baud int
}

// ParseSerial reads a console as the kernel's console= takes it,
// "ttyS0,115200" or "ttyS1" (115200 baud), for x86 PCs' UARTs.
func ParseSerial(s string) (Serial, error) {
	dev, baud, hasBaud := strings.Cut(s, ",")
	num, ok := strings.CutPrefix(dev, "ttyS")
	port, err := strconv.Atoi(num)
	if !ok || err != nil || port < 0 || port > 3 || strconv.Itoa(port) != num {
		return Serial{}, fmt.Errorf("serial console %q: want ttyS0 to ttyS3, optionally with a speed (ttyS0,115200)", s)
	}
	c := Serial{Port: port, Baud: 115200}
	if hasBaud {
		// The kernel takes options such as 115200n8; pxelinux a number.
		digits := strings.TrimRight(baud, "noe5678r")
		b, err := strconv.Atoi(digits)
		if err != nil || b < 50 || b > 115200 || digits != strconv.Itoa(b) {
			return Serial{}, fmt.Errorf("serial console %q: speed %q is not a number of bauds up to 115200", s, baud)
		}
		c.Baud = b
	}
	return c, nil
}

// KernelParam returns the console= parameter for the kernel.
func (s Serial) KernelParam() string {
	return fmt.Sprintf("console=ttyS%d,%d", s.Port, s.Baud)
}

// Entry is one system in a boot menu.
type Entry struct {
	// Title is the menu line, e.g. "fixture 1.0 (5n0mckly)".
	Title string
	// Dir is the directory of the entry's kernel (KernelName) and initrd
	// (InitrdName), relative to the TFTP root.
	Dir string
	// Init, KernelParams and Cmdline make the kernel command line, as in
	// netboot.ipxe: init=<Init> <KernelParams> <Cmdline>.
	Init         string
	KernelParams string
	Cmdline      string
}

// Menu is a boot menu offering several systems, written for pxelinux
// (PXELinux) and for iPXE (IPXE). The first entry is the default and boots
// by itself after Timeout.
type Menu struct {
	Title   string
	Timeout time.Duration // rounded to tenths of a second; at least 0.1 s
	Serial  *Serial       // pxelinux's console, besides the screen; nil: none
	Entries []Entry
}

// DefaultMenuTimeout is how long the menus wait before booting the first
// entry, when Menu.Timeout is zero.
const DefaultMenuTimeout = 5 * time.Second

func (m Menu) timeout() time.Duration {
	if m.Timeout <= 0 {
		return DefaultMenuTimeout
	}
	return max(m.Timeout.Round(100*time.Millisecond), 100*time.Millisecond)
}

// EntryLabel is the name of the i-th entry (from 0) in both menus.
func EntryLabel(i int) string { return "nixos-" + strconv.Itoa(i+1) }

func (m Menu) check() error {
	if len(m.Entries) == 0 {
		return fmt.Errorf("%w: no entries", ErrBadMenu)
	}
	if strings.ContainsAny(m.Title, "\n\r\x00") {
		return fmt.Errorf("%w: title %q has a line break or NUL", ErrBadMenu, m.Title)
	}
	dirs := map[string]int{}
	for i, e := range m.Entries {
		if _, err := e.line().Words(); err != nil {
			return fmt.Errorf("%w: entry %d: %v", ErrBadMenu, i+1, err)
		}
		if strings.ContainsAny(e.Title, "\n\r\x00") {
			return fmt.Errorf("%w: entry %d: title %q has a line break or NUL", ErrBadMenu, i+1, e.Title)
		}
		if e.Dir == "" || path.IsAbs(e.Dir) || path.Clean(e.Dir) != e.Dir || strings.HasPrefix(e.Dir, "../") ||
			e.Dir == ".." || strings.ContainsAny(e.Dir, " \t\n\r\x00\\") {
			return fmt.Errorf("%w: entry %d: directory %q is not a clean relative path without blanks", ErrBadMenu, i+1, e.Dir)
		}
		if j, dup := dirs[e.Dir]; dup {
			return fmt.Errorf("%w: entries %d and %d share the directory %s", ErrBadMenu, j+1, i+1, e.Dir)
		}
		dirs[e.Dir] = i
	}
	return nil
}

// line is the entry's command line without initrd=.
func (e Entry) line() cmdline.Line {
	return cmdline.Line{Init: e.Init, KernelParams: e.KernelParams, Extra: []string{e.Cmdline}}
}

// kernelArgs is the command line without initrd=; the entry is checked.
func (e Entry) kernelArgs() string {
	s, _ := e.line().String()
	return s
}

// CommandLine returns the kernel command line of entry i as pxelinux
// passes it, apart from the initrd= that pxelinux adds itself.
func (m Menu) CommandLine(i int) string { return m.Entries[i].kernelArgs() }

// PXELinux returns the text of pxelinux.cfg/default: menu.c32 as the user
// interface, one LABEL per entry with its kernel, initrd and command line,
// and the first entry booted after the timeout.
func (m Menu) PXELinux() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("# pxelinux menu: one entry per NixOS system; the first boots by itself\n")
	fmt.Fprintf(&b, "# after %s. Written by nbimg pxe.\n", seconds(m.timeout()))
	if m.Serial != nil {
		fmt.Fprintf(&b, "SERIAL %d %d\n", m.Serial.Port, m.Serial.Baud)
	}
	b.WriteString("UI menu.c32\n")
	if m.Title != "" {
		fmt.Fprintf(&b, "MENU TITLE %s\n", m.Title)
	}
	b.WriteString("PROMPT 0\n")
	fmt.Fprintf(&b, "TIMEOUT %d\n", m.timeout()/(100*time.Millisecond))
	fmt.Fprintf(&b, "DEFAULT %s\n", EntryLabel(0))
	fmt.Fprintf(&b, "ONTIMEOUT %s\n", EntryLabel(0))
	for i, e := range m.Entries {
		fmt.Fprintf(&b, "\nLABEL %s\n", EntryLabel(i))
		if e.Title != "" {
			fmt.Fprintf(&b, "  MENU LABEL %s\n", e.Title)
		}
		if i == 0 {
			b.WriteString("  MENU DEFAULT\n")
		}
		fmt.Fprintf(&b, "  LINUX %s/%s\n", e.Dir, KernelName)
		fmt.Fprintf(&b, "  INITRD %s/%s\n", e.Dir, InitrdName)
		fmt.Fprintf(&b, "  APPEND %s\n", e.kernelArgs())
	}
	return []byte(b.String()), nil
}

// IPXE returns the text of boot.ipxe: an iPXE menu of the same entries
// whose files are under prefix (the TFTP root as seen from the script,
// e.g. "tftp"), relative to where the script is loaded from. Each entry
// boots as netboot.ipxe does, ${cmdline} included.
func (m Menu) IPXE(prefix string) ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	if strings.ContainsAny(prefix, " \t\n\r\x00") {
		return nil, fmt.Errorf("%w: prefix %q has blanks", ErrBadMenu, prefix)
	}
	if prefix != "" {
		prefix = strings.TrimRight(prefix, "/") + "/"
	}
	title := m.Title
	if title == "" {
		title = "Boot menu"
	}
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	b.WriteString("# iPXE menu: one entry per NixOS system; the first boots by itself\n")
	fmt.Fprintf(&b, "# after %s. Written by nbimg pxe.\n\n", seconds(m.timeout()))
	fmt.Fprintf(&b, "menu %s\n", title)
	for i, e := range m.Entries {
		t := e.Title
		if t == "" {
			t = EntryLabel(i)
		}
		fmt.Fprintf(&b, "item %s %s\n", EntryLabel(i), t)
	}
	fmt.Fprintf(&b, "choose --default %s --timeout %d entry || goto %s\n", EntryLabel(0), m.timeout().Milliseconds(), EntryLabel(0))
	b.WriteString("goto ${entry}\n")
	for i, e := range m.Entries {
		dir := prefix + e.Dir + "/"
		fmt.Fprintf(&b, "\n:%s\n", EntryLabel(i))
		args := strings.Replace(e.kernelArgs(), " ", " initrd="+InitrdName+" ", 1)
		if !strings.Contains(args, " ") {
			args += " initrd=" + InitrdName
		}
		fmt.Fprintf(&b, "kernel --name %s %s%s %s ${cmdline}\n", KernelName, dir, KernelName, args)
		fmt.Fprintf(&b, "initrd --name %s %s%s\n", InitrdName, dir, InitrdName)
		b.WriteString("boot\n")
	}
	return []byte(b.String()), nil
}

func seconds(d time.Duration) string {
	s := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	if s == "1" {
		return "1 second"
	}
	return s + " seconds"
}
