// Package dhcp answers network boot clients as a proxy DHCP server (the
// PXE specification's ProxyDHCP, as pixiecore and dnsmasq's "proxy" mode
// do): it never hands out addresses, it only tells PXE, UEFI HTTP boot,
// iPXE and Raspberry Pi clients where their boot file is, while the
// network's ordinary DHCP server gives them an address.
//
// Identify classifies a request by its vendor class (option 60), client
// architecture (option 93, RFC 4578), user class (option 77, "iPXE") and,
// for Raspberry Pis, the MAC address's vendor prefix. A Decider (the serve
// package) chooses the boot file; Reply builds the answer: an OFFER to a
// DISCOVER on port 67 (broadcast to port 68), an ACK to a REQUEST on port
// 4011 (sent back to its sender). Packets are parsed by
// github.com/insomniacslk/dhcp; requests that are not network boot
// requests are ignored, malformed ones are logged and dropped.
package dhcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Class is the kind of boot client.
type Class int

// Client classes.
const (
	ClassNone      Class = iota // not a network boot client
	ClassBIOS                   // PXE on x86 BIOS (arch 0)
	ClassEFIx86                 // UEFI PXE, x86 (arch 6, 7, 9)
	ClassEFIArm64               // UEFI PXE, arm (arch 10, 11)
	ClassHTTPx86                // UEFI HTTP boot, x86 (arch 15, 16)
	ClassHTTPArm64              // UEFI HTTP boot, arm (arch 18, 19)
	ClassPi                     // Raspberry Pi firmware
)

var classNames = [...]string{"none", "bios", "efi-x86", "efi-arm64", "http-x86", "http-arm64", "raspberry-pi"}

func (c Class) String() string {
	if c < 0 || int(c) >= len(classNames) {
		return fmt.Sprintf("class(%d)", int(c))
	}
	return classNames[c]
}

// Client is what a request says about its sender.
type Client struct {
	MAC   net.HardwareAddr
	Class Class
	Arch  iana.Arch // option 93 (first value); 0 when absent
	// IPXE reports iPXE's user class: the firmware already is iPXE and
	// wants a script.
	IPXE   bool
	Vendor string // option 60
	GUID   []byte // option 97, echoed back
}

// piOUIs are the vendor prefixes of Raspberry Pi network interfaces.
var piOUIs = [][3]byte{
	{0xb8, 0x27, 0xeb}, {0xdc, 0xa6, 0x32}, {0xe4, 0x5f, 0x01},
	{0x28, 0xcd, 0xc1}, {0xd8, 0x3a, 0xdd}, {0x2c, 0xcf, 0x67},
}

// ErrNotBoot is returned by Identify for a request that is not from a
// network boot client (it gets no answer).
var ErrNotBoot = errors.New("dhcp: not a network boot request")

// Identify classifies a request.
func Identify(req *dhcpv4.DHCPv4) (Client, error) {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return Client{}, fmt.Errorf("%w: opcode %v", ErrNotBoot, req.OpCode)
	}
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return Client{}, fmt.Errorf("%w: hardware type %v", ErrNotBoot, req.HWType)
	}
	c := Client{MAC: req.ClientHWAddr, Vendor: req.ClassIdentifier(), GUID: req.GetOneOption(dhcpv4.OptionClientMachineIdentifier)}
	for _, uc := range req.UserClass() {
		if uc == "iPXE" {
			c.IPXE = true
		}
	}
	// Some iPXE builds send the user class as a plain string (not RFC 3004).
	if raw := req.GetOneOption(dhcpv4.OptionUserClassInformation); bytes.Equal(raw, []byte("iPXE")) {
		c.IPXE = true
	}
	if a := req.ClientArch(); len(a) > 0 {
		c.Arch = a[0]
	}
	pxe := strings.HasPrefix(c.Vendor, "PXEClient")
	http := strings.HasPrefix(c.Vendor, "HTTPClient")
	if !pxe && !http {
		return c, fmt.Errorf("%w: vendor class %q", ErrNotBoot, c.Vendor)
	}
	if pxe && c.Arch == iana.INTEL_X86PC && !c.IPXE {
		for _, o := range piOUIs {
			if bytes.Equal(c.MAC[:3], o[:]) {
				c.Class = ClassPi
				return c, nil
			}
		}
	}
	switch c.Arch {
	case iana.INTEL_X86PC:
		c.Class = ClassBIOS
	case iana.EFI_IA32, iana.EFI_X86_64, iana.EFI_BC:
		c.Class = ClassEFIx86
	case iana.EFI_ARM32, iana.EFI_ARM64:
		c.Class = ClassEFIArm64
	case iana.EFI_X86_HTTP, iana.EFI_X86_64_HTTP:
		c.Class = ClassHTTPx86
	case iana.EFI_ARM32_HTTP, iana.EFI_ARM64_HTTP:
		c.Class = ClassHTTPArm64
	default:
		return c, fmt.Errorf("%w: client architecture %d is not served", ErrNotBoot, c.Arch)
	}
	if http && c.Class != ClassHTTPx86 && c.Class != ClassHTTPArm64 {
		return c, fmt.Errorf("%w: HTTPClient with architecture %d", ErrNotBoot, c.Arch)
	}
	return c, nil
}

// Boot is what to tell a client.
type Boot struct {
	// File is the TFTP file name, or an http:// URL for HTTP boot and
	// iPXE clients.
	File string
	// Message is logged with the answer (what was chosen and why).
	Message string
}

// Decider chooses a client's boot file. ok false: do not answer.
type Decider interface {
	Decide(ctx context.Context, c Client) (b Boot, ok bool, err error)
}

// DeciderFunc adapts a function to Decider.
type DeciderFunc func(ctx context.Context, c Client) (Boot, bool, error)

// Decide calls f.
func (f DeciderFunc) Decide(ctx context.Context, c Client) (Boot, bool, error) { return f(ctx, c) }

// PiMenu is the PXE boot menu text the Raspberry Pi firmware looks for.
const PiMenu = "Raspberry Pi Boot"

// Reply builds the answer to req (a DISCOVER gets an OFFER, a REQUEST an
// ACK) from server, for client c booting b.
func Reply(req *dhcpv4.DHCPv4, c Client, b Boot, server net.IP) (*dhcpv4.DHCPv4, error) {
	var typ dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
		typ = dhcpv4.MessageTypeAck
	default:
		return nil, fmt.Errorf("%w: message type %v", ErrNotBoot, req.MessageType())
	}
	server = server.To4()
	if server == nil {
		return nil, errors.New("dhcp: the server address must be IPv4")
	}
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithServerIP(server),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)),
	)
	if err != nil {
		return nil, fmt.Errorf("dhcp: reply: %w", err)
	}
	resp.YourIPAddr = net.IPv4zero // a proxy never hands out addresses
	if len(c.GUID) > 0 {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, c.GUID))
	}
	switch c.Class {
	case ClassHTTPx86, ClassHTTPArm64:
		resp.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
		resp.BootFileName = b.File
	case ClassPi:
		resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
		resp.UpdateOption(dhcpv4.OptTFTPServerName(server.String()))
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, piVendorOptions()))
		resp.BootFileName = b.File
	default:
		resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
		// PXE_DISCOVERY_CONTROL = 8: boot the file in this answer,
		// without boot server discovery or a menu.
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}))
		if !strings.Contains(b.File, "://") {
			resp.UpdateOption(dhcpv4.OptTFTPServerName(server.String()))
		}
		resp.BootFileName = b.File
	}
	if len(resp.BootFileName) > 127 {
		// The file field holds 128 bytes with its NUL; longer names go
		// in option 67 only.
		resp.UpdateOption(dhcpv4.OptBootFileName(resp.BootFileName))
		resp.BootFileName = ""
	}
	return resp, nil
}

// piVendorOptions is the PXE vendor option block the Raspberry Pi firmware
// checks: discovery control 3, a menu prompt and the PiMenu boot item.
func piVendorOptions() []byte {
	b := []byte{6, 1, 3, 10, 4, 0, 'P', 'X', 'E', 9, byte(4 + len(PiMenu)), 0, 0, byte(len(PiMenu))}
	b = append(b, PiMenu...)
	return append(b, 255)
}

// Answer is one request handled (for logs and metrics).
type Answer struct {
	Client  Client
	Type    dhcpv4.MessageType // the request's
	Port    int                // 67 or 4011
	Boot    Boot
	Ignored error // why no answer was sent; nil when one was
	// Full DHCP (Server.Pool): the address offered or acknowledged, and
	// the reply's type.
	Addr  net.IP
	Reply dhcpv4.MessageType
	// To is where the reply goes when not the default (a renewing
	// client's own address).
	To net.Addr
}

// Server answers requests on the proxy DHCP port (67) and the PXE port
// (4011).
type Server struct {
	// ServerIP is the address announced as server identifier, TFTP
	// server and next server.
	ServerIP net.IP
	Decider  Decider
	Logger   *slog.Logger
	// Done, when set, is called after each request.
	Done func(Answer)
	// BroadcastAddr is where answers on port 67 go (default
	// 255.255.255.255:68).
	BroadcastAddr net.Addr
	// Pool, when set, makes the server on port 67 a full DHCP server
	// handing out its addresses (to every client; boot clients also get
	// their boot file) instead of a proxy. Port 4011 stays as it is.
	Pool *Pool
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Handle parses one packet and returns the reply to send (nil: none).
// port is the port it arrived on (67 or 4011): on 67 only DISCOVERs are
// answered (the DHCP server acknowledges the lease), on 4011 only
// REQUESTs.
func (s *Server) Handle(ctx context.Context, pkt []byte, port int) (reply []byte, a Answer, err error) {
	a.Port = port
	req, err := dhcpv4.FromBytes(pkt)
	if err != nil {
		return nil, a, fmt.Errorf("dhcp: malformed packet: %w", err)
	}
	a.Type = req.MessageType()
	if s.Pool != nil && port == 67 {
		return s.handleLease(ctx, req, a)
	}
	c, err := Identify(req)
	a.Client = c
	if err != nil {
		a.Ignored = err
		return nil, a, nil
	}
	want := dhcpv4.MessageTypeDiscover
	if port != 67 {
		want = dhcpv4.MessageTypeRequest
	}
	if a.Type != want {
		a.Ignored = fmt.Errorf("%w: %v on port %d", ErrNotBoot, a.Type, port)
		return nil, a, nil
	}
	b, ok, err := s.Decider.Decide(ctx, c)
	if err != nil {
		return nil, a, fmt.Errorf("dhcp: choosing a boot file for %s: %w", c.MAC, err)
	}
	if !ok {
		a.Ignored = errors.New("no boot file for this client")
		return nil, a, nil
	}
	a.Boot = b
	resp, err := Reply(req, c, b, s.ServerIP)
	if err != nil {
		return nil, a, err
	}
	return resp.ToBytes(), a, nil
}

// MaxInFlight bounds the requests handled at once by one Serve; past it
// packets are dropped (clients retransmit).
const MaxInFlight = 64

// Serve answers packets on conn (bound to port 67 or 4011, given as
// port) until ctx ends. Each packet is handled in its own goroutine with a
// deadline, so a slow decision (an API server) holds up no other client;
// a bad packet is logged and dropped.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn, port int) error {
	if s.Decider == nil || s.ServerIP == nil {
		return errors.New("dhcp: Server needs Decider and ServerIP")
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, MaxInFlight)
	for {
		buf := make([]byte, 1500)
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dhcp: reading on port %d: %w", port, err)
		}
		select {
		case sem <- struct{}{}:
		default:
			s.logger().Warn("too many requests at once, dropped one", "proto", "dhcp", "port", port, "from", from.String())
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.serveOne(ctx, conn, buf[:n], from, port)
		}()
	}
}

func (s *Server) serveOne(ctx context.Context, conn net.PacketConn, pkt []byte, from net.Addr, port int) {
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	reply, a, err := s.Handle(hctx, pkt, port)
	cancel()
	log := s.logger().With("proto", "dhcp", "port", port, "from", from.String())
	if a.Client.MAC != nil {
		log = log.With("mac", a.Client.MAC.String(), "arch", int(a.Client.Arch), "class", a.Client.Class.String(), "ipxe", a.Client.IPXE)
	}
	switch {
	case err != nil:
		log.Warn("request dropped", "err", err)
	case reply == nil:
		log.Debug("request ignored", "type", a.Type.String(), "why", a.Ignored)
	default:
		to := from
		if a.To != nil {
			to = a.To
		} else if port == 67 {
			to = s.BroadcastAddr
			if to == nil {
				to = &net.UDPAddr{IP: net.IPv4bcast, Port: 68}
			}
		}
		if _, err := conn.WriteTo(reply, to); err != nil {
			log.Warn("reply failed", "to", to.String(), "err", err)
			a.Ignored = err
		} else {
			args := []any{"type", a.Type.String(), "boot", a.Boot.File, "why", a.Boot.Message}
			if a.Reply != dhcpv4.MessageTypeNone {
				args = append(args, "reply", a.Reply.String(), "addr", a.Addr)
			}
			log.Info("answered", args...)
		}
	}
	if s.Done != nil && err == nil {
		s.Done(a)
	}
}
