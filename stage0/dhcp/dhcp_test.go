package dhcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
)

// serverReply makes a reply as a server would: the request's xid, yiaddr
// and options.
func serverReply(req []byte, typ byte, opts ...byte) []byte {
	b := make([]byte, 240)
	b[0] = 2
	copy(b[4:8], req[4:8])
	copy(b[16:20], []byte{10, 0, 2, 15})
	copy(b[28:44], req[28:44])
	copy(b[236:], magicCookie[:])
	b = append(b, optMsgType, 1, typ)
	b = append(b, opts...)
	return append(b, optEnd)
}

func TestBuild(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	d := Build(Discover, 0xdeadbeef, mac, nil)
	if len(d) != 300 || d[0] != 1 || binary.BigEndian.Uint32(d[4:]) != 0xdeadbeef ||
		binary.BigEndian.Uint16(d[10:]) != 0x8000 || !bytes.Equal(d[28:34], mac) ||
		!bytes.Equal(d[236:243], []byte{99, 130, 83, 99, optMsgType, 1, Discover}) {
		t.Errorf("DISCOVER wrong: % x", d[:250])
	}
	offer := Lease{Addr: netip.MustParseAddr("10.0.2.15"), ServerID: netip.MustParseAddr("10.0.2.2")}
	r := Build(Request, 7, mac, &offer)
	if !bytes.Contains(r[240:], []byte{optRequestedIP, 4, 10, 0, 2, 15}) || !bytes.Contains(r[240:], []byte{optServerID, 4, 10, 0, 2, 2}) {
		t.Errorf("REQUEST lacks the requested address or server: % x", r[240:270])
	}
}

func TestParse(t *testing.T) {
	req := Build(Discover, 42, net.HardwareAddr{1, 2, 3, 4, 5, 6}, nil)
	ack := serverReply(req, Ack,
		optPad,
		optSubnetMask, 4, 255, 255, 255, 0,
		optRouter, 8, 10, 0, 2, 2, 10, 0, 2, 1,
		optDNS, 8, 10, 0, 2, 3, 1, 1, 1, 1,
		optServerID, 4, 10, 0, 2, 2,
		optLeaseTime, 4, 0, 1, 81, 128)
	l, err := Parse(ack)
	if err != nil {
		t.Fatal(err)
	}
	if l.Type != Ack || l.XID != 42 || l.Addr != netip.MustParseAddr("10.0.2.15") ||
		l.Router != netip.MustParseAddr("10.0.2.2") || l.ServerID != netip.MustParseAddr("10.0.2.2") ||
		!slices.Equal(l.DNS, []netip.Addr{netip.MustParseAddr("10.0.2.3"), netip.MustParseAddr("1.1.1.1")}) ||
		l.Prefix() != netip.MustParsePrefix("10.0.2.15/24") {
		t.Errorf("lease %+v", l)
	}
	noMask, err := Parse(serverReply(req, Offer, optSubnetMask, 4, 255, 0, 255, 0))
	if err != nil || noMask.Mask != nil || noMask.Prefix().Bits() != 24 {
		t.Errorf("a non-contiguous mask: %+v %v", noMask, err)
	}
	for name, b := range map[string][]byte{
		"short":     req[:100],
		"request":   req,
		"overrun":   serverReply(req, Ack, optRouter, 40, 1),
		"no type":   append(serverReply(req, Ack)[:240], optEnd),
		"no cookie": append(make([]byte, 236), 2, 2, 2, 2),
	} {
		if _, err := Parse(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	req := Build(Discover, 42, net.HardwareAddr{1, 2, 3, 4, 5, 6}, nil)
	f.Add(serverReply(req, Ack, optSubnetMask, 4, 255, 255, 255, 0, optRouter, 4, 10, 0, 2, 2))
	f.Add(serverReply(req, Offer, optDNS, 3, 1, 2, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Parse(b)
		if err != nil {
			return
		}
		if l.Type == 0 || !l.Addr.Is4() {
			t.Fatalf("accepted lease without type or IPv4 address: %+v", l)
		}
		_ = l.Prefix()
	})
}
