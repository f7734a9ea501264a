package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// handleLease answers a request on port 67 as a full DHCP server: an
// address from s.Pool for every client (DISCOVER → OFFER, REQUEST → ACK
// or NAK, RELEASE and DECLINE update the pool, INFORM → ACK without an
// address) and, for network boot clients the Decider answers, their boot
// file in the same reply. Relayed requests (giaddr) are not served.
func (s *Server) handleLease(ctx context.Context, req *dhcpv4.DHCPv4, a Answer) ([]byte, Answer, error) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		a.Ignored = fmt.Errorf("%w: not an Ethernet client request", ErrNotBoot)
		return nil, a, nil
	}
	if gw := req.GatewayIPAddr; gw != nil && !gw.IsUnspecified() {
		a.Ignored = errors.New("dhcp: relayed requests are not served")
		return nil, a, nil
	}
	mac := req.ClientHWAddr
	c, idErr := Identify(req)
	if c.MAC == nil {
		c.MAC = mac
	}
	a.Client = c
	p := s.Pool
	var addr net.IP
	switch a.Type {
	case dhcpv4.MessageTypeDiscover:
		addr = p.Offer(mac, req.RequestedIPAddress())
		if addr == nil {
			a.Ignored = errors.New("dhcp: the address range is full")
			return nil, a, nil
		}
		a.Reply = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		sid := req.ServerIdentifier()
		if sid != nil && !sid.Equal(s.ServerIP) {
			p.Release(mac, nil) // it took another server's offer
			a.Ignored = fmt.Errorf("dhcp: the client chose server %v", sid)
			return nil, a, nil
		}
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr
		}
		switch {
		case p.Request(mac, want):
			addr = want
			a.Reply = dhcpv4.MessageTypeAck
			if ci := req.ClientIPAddr; ci != nil && !ci.IsUnspecified() {
				a.To = &net.UDPAddr{IP: ci, Port: 68} // renewing: it has the address
			}
		case sid != nil || p.Contains(want):
			// Ours to refuse: it asked us (SELECTING) or for an
			// address of our range (RFC 2131 4.3.2: a server with
			// no record of the client stays silent otherwise).
			a.Reply = dhcpv4.MessageTypeNak
		default:
			a.Ignored = fmt.Errorf("dhcp: %v is not one of this server's addresses", want)
			return nil, a, nil
		}
	case dhcpv4.MessageTypeRelease:
		p.Release(mac, req.ClientIPAddr)
		a.Ignored = errors.New("released")
		return nil, a, nil
	case dhcpv4.MessageTypeDecline:
		p.Decline(mac, req.RequestedIPAddress())
		a.Ignored = errors.New("declined")
		return nil, a, nil
	case dhcpv4.MessageTypeInform:
		ci := req.ClientIPAddr
		if !p.InSubnet(ci) {
			a.Ignored = fmt.Errorf("dhcp: an INFORM from %v, not on this network", ci)
			return nil, a, nil
		}
		a.Reply = dhcpv4.MessageTypeAck
		a.To = &net.UDPAddr{IP: ci, Port: 68}
	default:
		a.Ignored = fmt.Errorf("%w: message type %v", ErrNotBoot, a.Type)
		return nil, a, nil
	}
	a.Addr = addr
	// The boot file is chosen only for a reply this server sends (never
	// for a request meant for another server); a Decider that fails (an
	// API server down, a build error) costs the client its boot file, not
	// its address.
	var boot *Boot
	if idErr == nil && a.Reply != dhcpv4.MessageTypeNak {
		b, ok, err := s.Decider.Decide(ctx, c)
		switch {
		case err != nil:
			s.logger().Warn("dhcp: no boot file", "mac", c.MAC.String(), "err", err)
		case ok:
			boot = &b
			a.Boot = b
		}
	}
	resp, err := s.leaseReply(req, c, boot, a.Reply, addr)
	if err != nil {
		return nil, a, err
	}
	return resp.ToBytes(), a, nil
}

// leaseReply builds a full DHCP reply of type typ giving addr (nil for an
// INFORM's ACK and a NAK), with the boot answer when boot is set.
func (s *Server) leaseReply(req *dhcpv4.DHCPv4, c Client, boot *Boot, typ dhcpv4.MessageType, addr net.IP) (*dhcpv4.DHCPv4, error) {
	server := s.ServerIP.To4()
	if server == nil {
		return nil, errors.New("dhcp: the server address must be IPv4")
	}
	var resp *dhcpv4.DHCPv4
	var err error
	if boot != nil {
		if resp, err = Reply(req, c, *boot, server); err != nil {
			return nil, err
		}
		resp.UpdateOption(dhcpv4.OptMessageType(typ))
	} else {
		resp, err = dhcpv4.NewReplyFromRequest(req,
			dhcpv4.WithMessageType(typ),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)))
		if err != nil {
			return nil, fmt.Errorf("dhcp: reply: %w", err)
		}
	}
	if typ == dhcpv4.MessageTypeNak {
		resp.YourIPAddr = net.IPv4zero
		resp.ServerIPAddr = net.IPv4zero
		resp.BootFileName = ""
		return resp, nil
	}
	resp.UpdateOption(dhcpv4.OptSubnetMask(s.Pool.mask))
	if s.Pool.router != nil {
		resp.UpdateOption(dhcpv4.OptRouter(s.Pool.router))
	}
	if len(s.Pool.dns) > 0 {
		resp.UpdateOption(dhcpv4.OptDNS(s.Pool.dns...))
	}
	if addr == nil {
		resp.YourIPAddr = net.IPv4zero
		return resp, nil // INFORM: configuration only
	}
	resp.YourIPAddr = addr.To4()
	lt := s.Pool.leaseTime
	resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(lt))
	resp.UpdateOption(dhcpv4.OptRenewTimeValue(lt / 2))
	resp.UpdateOption(dhcpv4.OptRebindingTimeValue(lt * 7 / 8))
	return resp, nil
}
