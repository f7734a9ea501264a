// Package dhcp is a small DHCPv4 client for stage 0: DISCOVER, OFFER,
// REQUEST, ACK on one interface, asking the server to broadcast its
// replies (so no raw sockets are needed before the interface has an
// address), then the address, netmask, router and DNS servers set on the
// interface (Linux, in client_linux.go).
//
// Limits: no lease renewal (stage 0 and the system's stage 1 run for
// seconds; the system's own network setup takes over), no relay agents,
// IPv4 only.
package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Message types (option 53).
const (
	Discover = 1
	Offer    = 2
	Request  = 3
	Decline  = 4
	Ack      = 5
	Nak      = 6
)

// Options used.
const (
	optSubnetMask  = 1
	optRouter      = 3
	optDNS         = 6
	optRequestedIP = 50
	optLeaseTime   = 51
	optMsgType     = 53
	optServerID    = 54
	optParamList   = 55
	optEnd         = 255
	optPad         = 0
)

var magicCookie = [4]byte{99, 130, 83, 99}

// ErrMalformed is returned for a packet that is not a DHCP reply.
var ErrMalformed = errors.New("dhcp: malformed packet")

// Lease is what the server offered or acknowledged.
type Lease struct {
	Type     int
	XID      uint32
	Addr     netip.Addr // yiaddr
	Mask     net.IPMask
	Router   netip.Addr // first router, if any
	DNS      []netip.Addr
	ServerID netip.Addr
}

// Prefix returns the address with its prefix length (/24 when the server
// sent no mask).
func (l Lease) Prefix() netip.Prefix {
	ones := 24
	if l.Mask != nil {
		ones, _ = l.Mask.Size()
	}
	return netip.PrefixFrom(l.Addr, ones)
}

// Build returns a client message of type typ (Discover or Request) for
// the hardware address mac; for a Request, offer is the OFFER answered.
func Build(typ int, xid uint32, mac net.HardwareAddr, offer *Lease) []byte {
	b := make([]byte, 240, 300)
	b[0] = 1 // BOOTREQUEST
	b[1] = 1 // Ethernet
	b[2] = 6
	binary.BigEndian.PutUint32(b[4:], xid)
	binary.BigEndian.PutUint16(b[10:], 0x8000) // broadcast replies, please
	copy(b[28:44], mac)
	copy(b[236:240], magicCookie[:])
	b = append(b, optMsgType, 1, byte(typ))
	if typ == Request && offer != nil {
		ip := offer.Addr.As4()
		b = append(b, optRequestedIP, 4)
		b = append(b, ip[:]...)
		if offer.ServerID.IsValid() {
			sid := offer.ServerID.As4()
			b = append(b, optServerID, 4)
			b = append(b, sid[:]...)
		}
	}
	b = append(b, optParamList, 4, optSubnetMask, optRouter, optDNS, optLeaseTime)
	b = append(b, optEnd)
	for len(b) < 300 { // BOOTP minimum, some servers insist
		b = append(b, optPad)
	}
	return b
}

// Parse reads a server reply.
func Parse(b []byte) (Lease, error) {
	var l Lease
	if len(b) < 240 || b[0] != 2 || [4]byte(b[236:240]) != magicCookie {
		return l, ErrMalformed
	}
	l.XID = binary.BigEndian.Uint32(b[4:])
	l.Addr = netip.AddrFrom4([4]byte(b[16:20]))
	opts := b[240:]
	for len(opts) > 0 {
		code := opts[0]
		if code == optEnd {
			break
		}
		if code == optPad {
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || len(opts) < 2+int(opts[1]) {
			return l, fmt.Errorf("%w: option %d overruns the packet", ErrMalformed, code)
		}
		v := opts[2 : 2+int(opts[1])]
		opts = opts[2+int(opts[1]):]
		switch code {
		case optMsgType:
			if len(v) == 1 {
				l.Type = int(v[0])
			}
		case optSubnetMask:
			if len(v) == 4 {
				m := net.IPMask(append([]byte(nil), v...))
				if ones, bits := m.Size(); bits == 32 && ones > 0 {
					l.Mask = m
				}
			}
		case optRouter:
			if len(v) >= 4 {
				l.Router = netip.AddrFrom4([4]byte(v[:4]))
			}
		case optDNS:
			for i := 0; i+4 <= len(v); i += 4 {
				l.DNS = append(l.DNS, netip.AddrFrom4([4]byte(v[i:i+4])))
			}
		case optServerID:
			if len(v) == 4 {
				l.ServerID = netip.AddrFrom4([4]byte(v))
			}
		}
	}
	if l.Type == 0 {
		return l, fmt.Errorf("%w: no message type", ErrMalformed)
	}
	return l, nil
}
