package netboot

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
)

// ErrBadDnsmasq is returned for settings that cannot go in dnsmasq.conf.
var ErrBadDnsmasq = errors.New("netboot: invalid dnsmasq setting")

// Dnsmasq is a dnsmasq configuration that serves a PXE tree: TFTP from
// TFTPRoot and, on each of ProxyNets, proxy DHCP, which answers PXE
// clients with the boot file and leaves addresses to the network's own
// DHCP server. DNS is turned off (port=0).
type Dnsmasq struct {
	// TFTPRoot is the absolute path of the directory to serve.
	TFTPRoot string
	// ProxyNets are the IPv4 networks to offer proxy DHCP on, each an
	// address ("192.168.1.0") or a prefix ("192.168.1.0/24"). Without any,
	// the configuration only serves TFTP, for a DHCP server that already
	// sends next-server and the boot file.
	ProxyNets []string
	// BootFile is the file BIOS PXE clients load, relative to TFTPRoot;
	// default PXELinuxName.
	BootFile string
	// MenuText names the boot service in the client's PXE menu.
	MenuText string
	// NoBIOS leaves BIOS clients (client architecture 0) unanswered: a
	// tree without an x86 system has nothing they can run. It needs a
	// UEFI boot file.
	NoBIOS bool

	// EFIx64 is the file x86-64 UEFI clients (client architecture 7 and
	// 9) load, relative to TFTPRoot: iPXE's EFI build (IPXEEFIName) or a
	// Unified Kernel Image. Empty: UEFI x86-64 clients get no answer.
	EFIx64 string
	// EFIArm64 is the file arm64 UEFI clients (client architecture 11)
	// load, relative to TFTPRoot. Empty: no answer.
	EFIArm64 string
	// IPXEScript, when set, is what x86-64 UEFI clients that run iPXE
	// (DHCP user class "iPXE") load instead of EFIx64, relative to
	// TFTPRoot: the script an iPXE EFIx64 chains (MenuName). Without it a
	// client booting iPXE would be told to load iPXE again, forever.
	IPXEScript string
	// HTTPBase, when set, is the URL the UEFI boot files are also served
	// under (http://server/path/): UEFI HTTP boot clients (client
	// architecture 16 x86-64, 19 arm64, vendor class HTTPClient) get
	// HTTPBase + EFIx64 or EFIArm64.
	HTTPBase string
}

// Client architectures: DHCP option 93 (RFC 4578, IANA's "Processor
// Architecture Types").
const (
	ArchBIOS         = 0
	ArchEFIx64BC     = 7 // what most x86-64 UEFI firmware sends
	ArchEFIx64       = 9
	ArchEFIArm64     = 11
	ArchEFIx64HTTP   = 16
	ArchEFIArm64HTTP = 19
)

// ParseProxyNet checks a --proxy-net value and returns the dnsmasq
// dhcp-range it makes: "ADDR,proxy" for an address, "NET,proxy,MASK" for a
// prefix (its host bits cleared).
func ParseProxyNet(s string) (string, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if !p.Addr().Is4() {
			return "", fmt.Errorf("%w: proxy network %q: proxy DHCP is IPv4 only", ErrBadDnsmasq, s)
		}
		p = p.Masked()
		var mask [4]byte
		for i := 0; i < p.Bits(); i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		return fmt.Sprintf("%s,proxy,%s", p.Addr(), netip.AddrFrom4(mask)), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", fmt.Errorf("%w: proxy network %q: want an IPv4 network address such as 192.168.1.0 or 192.168.1.0/24", ErrBadDnsmasq, s)
	}
	if !a.Is4() {
		return "", fmt.Errorf("%w: proxy network %q: proxy DHCP is IPv4 only", ErrBadDnsmasq, s)
	}
	return a.String() + ",proxy", nil
}

// Config returns the text of dnsmasq.conf.
func (d Dnsmasq) Config() ([]byte, error) {
	if !filepath.IsAbs(d.TFTPRoot) {
		return nil, fmt.Errorf("%w: TFTP root %q is not an absolute path", ErrBadDnsmasq, d.TFTPRoot)
	}
	boot := d.BootFile
	if boot == "" {
		boot = PXELinuxName
	}
	text := d.MenuText
	if text == "" {
		text = "Network boot"
	}
	root, err := DnsmasqQuote(d.TFTPRoot)
	if err != nil {
		return nil, fmt.Errorf("TFTP root: %w", err)
	}
	quotedText, err := dnsmasqQuoted(text)
	if err != nil {
		return nil, fmt.Errorf("menu text: %w", err)
	}
	for _, f := range []struct{ name, v string }{{"boot file", boot}, {"x86-64 UEFI boot file", d.EFIx64},
		{"arm64 UEFI boot file", d.EFIArm64}, {"iPXE script", d.IPXEScript}, {"HTTP base URL", d.HTTPBase}} {
		if strings.ContainsAny(f.v, ",\"\\# \t\n\r\x00") {
			return nil, fmt.Errorf("%w: %s %q has a comma, quote, backslash, #, blank or line break", ErrBadDnsmasq, f.name, f.v)
		}
	}
	if d.HTTPBase != "" {
		u, err := url.Parse(d.HTTPBase)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%w: HTTP base %q is not an http:// or https:// URL", ErrBadDnsmasq, d.HTTPBase)
		}
		if d.EFIx64 == "" && d.EFIArm64 == "" {
			return nil, fmt.Errorf("%w: an HTTP base URL needs a UEFI boot file", ErrBadDnsmasq)
		}
	}
	if d.NoBIOS && d.EFIx64 == "" && d.EFIArm64 == "" {
		return nil, fmt.Errorf("%w: no boot file for any client", ErrBadDnsmasq)
	}
	if d.IPXEScript != "" && d.EFIx64 == "" {
		return nil, fmt.Errorf("%w: an iPXE script needs a UEFI boot file that chains it", ErrBadDnsmasq)
	}
	var ranges []string
	for _, n := range d.ProxyNets {
		r, err := ParseProxyNet(n)
		if err != nil {
			return nil, err
		}
		ranges = append(ranges, r)
	}
	var b strings.Builder
	b.WriteString("# dnsmasq configuration written by nbimg pxe: TFTP for the PXE tree and\n")
	b.WriteString("# proxy DHCP, which tells PXE clients what to boot and leaves addresses to\n")
	b.WriteString("# the network's DHCP server. Run as root: dnsmasq -d -C dnsmasq.conf\n")
	b.WriteString("\n# No DNS.\nport=0\n")
	b.WriteString("log-dhcp\n")
	b.WriteString("dhcp-no-override\n")
	b.WriteString("\nenable-tftp\n")
	fmt.Fprintf(&b, "tftp-root=%s\n", root)
	if len(ranges) == 0 {
		first := boot
		switch {
		case d.NoBIOS && d.EFIx64 != "":
			first = d.EFIx64
		case d.NoBIOS:
			first = d.EFIArm64
		}
		b.WriteString("\n# No --proxy-net given: TFTP only. Point your DHCP server at this host\n")
		fmt.Fprintf(&b, "# (next-server) with the boot file %s.\n", first)
	} else {
		b.WriteString("\n# Proxy DHCP on these networks.\n")
		for _, r := range ranges {
			fmt.Fprintf(&b, "dhcp-range=%s\n", r)
		}
	}
	// dnsmasq adds PXE's ".0" to a name without one.
	service := strings.TrimSuffix(boot, ".0")
	if d.NoBIOS {
		b.WriteString("\n# No x86 system: BIOS PXE clients get no answer.\n")
	} else {
		fmt.Fprintf(&b, "\n# BIOS PXE clients load %s (one service: no PXE menu).\n", boot)
		fmt.Fprintf(&b, "pxe-service=x86PC,%s,%s\n", quotedText, service)
	}
	if d.EFIx64 == "" && d.EFIArm64 == "" {
		return []byte(b.String()), nil
	}
	b.WriteString("\n# UEFI clients, by client architecture (DHCP option 93): 7 and 9 are\n")
	b.WriteString("# x86-64 UEFI, 11 arm64 UEFI. dnsmasq names them BC_EFI, x86-64_EFI and\n")
	b.WriteString("# ARM64_EFI; a file name with a dot gets no \".0\" added.\n")
	notIPXE := ""
	if d.IPXEScript != "" {
		b.WriteString("# iPXE says so in its DHCP user class: it gets the script, not itself again.\n")
		b.WriteString("dhcp-userclass=set:ipxe,iPXE\n")
		notIPXE = "tag:!ipxe,"
	}
	for _, csa := range []string{"BC_EFI", "x86-64_EFI"} {
		if d.EFIx64 == "" {
			break
		}
		fmt.Fprintf(&b, "pxe-service=%s%s,%s,%s\n", notIPXE, csa, quotedText, d.EFIx64)
		if d.IPXEScript != "" {
			fmt.Fprintf(&b, "pxe-service=tag:ipxe,%s,%s,%s\n", csa, quotedText, d.IPXEScript)
		}
	}
	if d.EFIArm64 != "" {
		fmt.Fprintf(&b, "pxe-service=ARM64_EFI,%s,%s\n", quotedText, d.EFIArm64)
	}
	if d.HTTPBase != "" {
		base := strings.TrimRight(d.HTTPBase, "/") + "/"
		b.WriteString("\n# UEFI HTTP boot (client architecture 16 x86-64, 19 arm64): the answer\n")
		b.WriteString("# carries vendor class HTTPClient and the boot file as a URL. dnsmasq\n")
		b.WriteString("# sends it where it gives addresses (a dhcp-range without \"proxy\"); in\n")
		b.WriteString("# proxy mode it answers PXE clients only, so give your DHCP server the\n")
		b.WriteString("# same two settings for these clients.\n")
		for _, h := range []struct {
			tag  string
			arch int
			file string
		}{{"efi-http-x64", ArchEFIx64HTTP, d.EFIx64}, {"efi-http-arm64", ArchEFIArm64HTTP, d.EFIArm64}} {
			if h.file == "" {
				continue
			}
			fmt.Fprintf(&b, "dhcp-match=set:%s,option:client-arch,%d\n", h.tag, h.arch)
			fmt.Fprintf(&b, "dhcp-option-force=tag:%s,60,HTTPClient\n", h.tag)
			fmt.Fprintf(&b, "dhcp-boot=tag:%s,%s%s\n", h.tag, base, h.file)
		}
	}
	return []byte(b.String()), nil
}

// DnsmasqQuote returns s as one value of a dnsmasq.conf option. A value
// holding a comma, #, quote, backslash or blank goes in double quotes,
// inside which dnsmasq splits on no comma, starts no comment at # and keeps
// blanks, with backslash and double quote escaped and a tab written \t;
// any other value is returned as it is. A line break, NUL or other control
// character cannot be written and is refused.
func DnsmasqQuote(s string) (string, error) {
	if s != "" && !strings.ContainsAny(s, ",#\"\\ \t") && !hasControl(s) {
		return s, nil
	}
	return dnsmasqQuoted(s)
}

// dnsmasqQuoted returns s in double quotes, as DnsmasqQuote describes.
func dnsmasqQuoted(s string) (string, error) {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c == 0x7f:
			return "", fmt.Errorf("%w: %q has a line break or control character, which dnsmasq.conf cannot hold", ErrBadDnsmasq, s)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}
