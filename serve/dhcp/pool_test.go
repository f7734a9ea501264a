package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func testPool(t testing.TB, start, end string, c *clock) *Pool {
	t.Helper()
	p, err := NewPool(server, PoolOptions{Start: net.ParseIP(start), End: net.ParseIP(end), LeaseTime: time.Hour,
		Router: net.ParseIP("10.9.8.254"), DNS: []net.IP{net.ParseIP("10.9.8.253")}, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mac(t testing.TB, i int) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseRangeAndNewPool(t *testing.T) {
	start, end, mask, err := ParseRange("10.9.8.50, 10.9.8.99,255.255.255.0")
	if err != nil || !start.Equal(net.ParseIP("10.9.8.50")) || !end.Equal(net.ParseIP("10.9.8.99")) || mask.String() != "ffffff00" {
		t.Errorf("ParseRange: %v %v %v %v", start, end, mask, err)
	}
	for _, bad := range []string{"", "10.9.8.50", "10.9.8.50,x", "::1,::2", "10.9.8.1,10.9.8.2,255.0.255.0", "10.9.8.1,10.9.8.2,0.0.0.0", "a,b,c,d"} {
		if _, _, _, err := ParseRange(bad); !errors.Is(err, ErrRange) {
			t.Errorf("ParseRange(%q): %v, want ErrRange", bad, err)
		}
	}
	for _, r := range [][2]string{
		{"10.9.8.99", "10.9.8.50"}, // reversed
		{"10.9.7.50", "10.9.8.99"}, // another subnet
		{"10.9.8.0", "10.9.8.20"},  // the network address
		{"10.9.8.200", "10.9.8.255"},
		{"10.9.8.1", "10.9.8.20"}, // the server's own address
		{"10.9.9.2", "10.9.9.20"},
	} {
		if _, err := NewPool(server, PoolOptions{Start: net.ParseIP(r[0]), End: net.ParseIP(r[1])}); !errors.Is(err, ErrRange) {
			t.Errorf("NewPool(%s-%s): %v, want ErrRange", r[0], r[1], err)
		}
	}
	if _, err := NewPool(server, PoolOptions{Start: net.ParseIP("10.9.16.1"), End: net.ParseIP("10.9.255.254"), Mask: net.CIDRMask(16, 32)}); err != nil {
		t.Errorf("a /16 range: %v", err)
	}
}

// TestPool: offers are deterministic and inside the range; the range
// fills up and offers stop; expired offers free their addresses; a lease
// is kept by its client; release and decline work.
func TestPool(t *testing.T) {
	c := &clock{time.Unix(1_000_000, 0)}
	const n = 8
	p := testPool(t, "10.9.8.10", "10.9.8.17", c)
	q := testPool(t, "10.9.8.10", "10.9.8.17", c)
	seen := map[string]string{}
	for i := range n {
		a, b := p.Offer(mac(t, i), nil), q.Offer(mac(t, i), nil)
		if a == nil || !a.Equal(b) {
			t.Fatalf("client %d: offers %v and %v from two pools in the same state", i, a, b)
		}
		if !p.Contains(a) {
			t.Fatalf("offer %v outside the range", a)
		}
		if other, dup := seen[a.String()]; dup {
			t.Fatalf("%v offered to %s and %s", a, other, mac(t, i))
		}
		seen[a.String()] = mac(t, i).String()
		if again := p.Offer(mac(t, i), nil); !again.Equal(a) {
			t.Errorf("client %d: a second DISCOVER got %v, the first %v", i, again, a)
		}
	}
	if got := p.Offer(mac(t, 100), nil); got != nil {
		t.Errorf("a full range offered %v", got)
	}
	// A client binds its offer; another cannot take it.
	a0 := p.Offer(mac(t, 0), nil)
	if !p.Request(mac(t, 0), a0) {
		t.Fatal("REQUEST of the offered address refused")
	}
	if p.Request(mac(t, 100), a0) {
		t.Error("another client got a bound address")
	}
	if p.Request(mac(t, 0), net.ParseIP("10.9.8.9")) || p.Request(mac(t, 0), net.ParseIP("10.9.8.18")) {
		t.Error("an address outside the range was acknowledged")
	}
	// Offers expire; the lease does not (yet).
	c.t = c.t.Add(OfferHold + time.Second)
	got := p.Offer(mac(t, 100), nil)
	if got == nil || got.Equal(a0) || !p.Contains(got) {
		t.Errorf("after the offers expired: %v (bound: %v)", got, a0)
	}
	ls := p.Leases()
	if len(ls) != 2 || !ls[0].Bound && !ls[1].Bound {
		t.Errorf("leases %+v: want the bound one and the new offer", ls)
	}
	// A requested address is honored when free.
	want := net.ParseIP("10.9.8.17")
	if p.Contains(want) && !got.Equal(want) {
		if r := p.Offer(mac(t, 101), want); !r.Equal(want) {
			t.Errorf("requested %v, offered %v", want, r)
		}
	}
	// Release frees; decline blocks the address.
	p.Release(mac(t, 0), a0)
	if !p.Request(mac(t, 102), a0) {
		t.Error("a released address was not free")
	}
	p.Decline(mac(t, 102), a0)
	if p.Request(mac(t, 103), a0) {
		t.Error("a declined address was handed out again")
	}
	// The lease runs out.
	c.t = c.t.Add(2 * time.Hour)
	if !p.Request(mac(t, 103), a0) {
		t.Error("an address was still blocked after its lease time")
	}
}

// TestPoolNeverOutside hands out a whole /24's worth of addresses from a
// small range to many clients with random requests: every address given
// is in the range and given to one client at a time.
func TestPoolNeverOutside(t *testing.T) {
	c := &clock{time.Unix(1_000_000, 0)}
	p := testPool(t, "10.9.8.100", "10.9.8.131", c)
	holder := map[string]string{}
	for i := range 500 {
		m := mac(t, i)
		req := net.IPv4(10, 9, 8, byte(i*7))
		a := p.Offer(m, req)
		if a == nil {
			c.t = c.t.Add(2 * time.Hour) // all taken: let everything expire
			holder = map[string]string{}
			continue
		}
		if !p.Contains(a) {
			t.Fatalf("offered %v outside the range", a)
		}
		if i%3 == 0 {
			if !p.Request(m, a) {
				t.Fatalf("REQUEST of its own offer %v refused", a)
			}
		}
		if h, ok := holder[a.String()]; ok && h != m.String() {
			t.Fatalf("%v held by %s offered to %s", a, h, m)
		}
		holder[a.String()] = m.String()
	}
}

func leaseServer(t testing.TB, c *clock, d Decider) *Server {
	return &Server{ServerIP: server, Decider: d, Pool: testPool(t, "10.9.8.50", "10.9.8.59", c)}
}

func handle(t *testing.T, s *Server, req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, Answer) {
	t.Helper()
	b, a, err := s.Handle(context.Background(), req.ToBytes(), 67)
	if err != nil {
		t.Fatal(err)
	}
	if b == nil {
		return nil, a
	}
	r, err := dhcpv4.FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return r, a
}

// TestFullDHCP: DISCOVER → OFFER with an address, mask, router and lease
// time; REQUEST → ACK; a boot client gets its boot file with the address;
// a request for a taken address is NAKed; a REQUEST naming another server
// gets no answer and frees the offer.
func TestFullDHCP(t *testing.T) {
	c := &clock{time.Unix(1_000_000, 0)}
	s := leaseServer(t, c, fixed("undionly.kpxe"))
	plain := request(t, dhcpv4.MessageTypeDiscover, "52:54:00:00:00:01", "", -1, false)
	offer, _ := handle(t, s, plain)
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer || !s.Pool.Contains(offer.YourIPAddr) {
		t.Fatalf("offer: %v", offer)
	}
	if offer.SubnetMask().String() != "ffffff00" || offer.IPAddressLeaseTime(0) != time.Hour || len(offer.Router()) != 1 ||
		len(offer.DNS()) != 1 || !offer.DNS()[0].Equal(net.IPv4(10, 9, 8, 253)) ||
		!offer.ServerIdentifier().Equal(server) || offer.BootFileName != "" || offer.ClassIdentifier() != "" {
		t.Errorf("offer options: %v", offer.Summary())
	}
	req := request(t, dhcpv4.MessageTypeRequest, "52:54:00:00:00:01", "", -1, false)
	req.UpdateOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr))
	req.UpdateOption(dhcpv4.OptServerIdentifier(server))
	ack, a := handle(t, s, req)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(offer.YourIPAddr) || a.To != nil {
		t.Fatalf("ack: %v (to %v)", ack, a.To)
	}
	// Renewal: unicast from the address, answered there.
	renew := request(t, dhcpv4.MessageTypeRequest, "52:54:00:00:00:01", "", -1, false)
	renew.ClientIPAddr = offer.YourIPAddr
	ack, a = handle(t, s, renew)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || a.To == nil || a.To.String() != offer.YourIPAddr.String()+":68" {
		t.Errorf("renewal: %v to %v", ack, a.To)
	}
	// Someone else asking for that address is refused.
	other := request(t, dhcpv4.MessageTypeRequest, "52:54:00:00:00:02", "", -1, false)
	other.UpdateOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr))
	nak, _ := handle(t, s, other)
	if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak || !nak.YourIPAddr.IsUnspecified() {
		t.Errorf("request for a taken address: %v", nak)
	}
	// Off this network: not ours to refuse.
	other.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 0, 2, 7)))
	if r, _ := handle(t, s, other); r != nil {
		t.Errorf("request for an address of another network answered: %v", r)
	}
	// A PXE client: address and boot file in one answer.
	pxe := request(t, dhcpv4.MessageTypeDiscover, "52:54:00:00:00:03", "PXEClient:Arch:00000:UNDI:002001", 0, false)
	offer, a = handle(t, s, pxe)
	if offer == nil || !s.Pool.Contains(offer.YourIPAddr) || offer.BootFileName != "undionly.kpxe" || offer.ClassIdentifier() != "PXEClient" ||
		offer.MessageType() != dhcpv4.MessageTypeOffer || a.Boot.File != "undionly.kpxe" {
		t.Errorf("PXE offer: %v", offer)
	}
	// It takes another server's offer: ours is freed.
	chose := request(t, dhcpv4.MessageTypeRequest, "52:54:00:00:00:03", "PXEClient:Arch:00000:UNDI:002001", 0, false)
	chose.UpdateOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 9, 8, 2)))
	chose.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 9, 8, 200)))
	if r, _ := handle(t, s, chose); r != nil {
		t.Errorf("REQUEST to another server answered: %v", r)
	}
	for _, l := range s.Pool.Leases() {
		if l.MAC == "52:54:00:00:00:03" {
			t.Errorf("the offer to a client that chose another server is kept: %+v", l)
		}
	}
	// INFORM: configuration, no address.
	inf := request(t, dhcpv4.MessageTypeInform, "52:54:00:00:00:04", "", -1, false)
	inf.ClientIPAddr = net.IPv4(10, 9, 8, 77)
	r, a := handle(t, s, inf)
	if r == nil || r.MessageType() != dhcpv4.MessageTypeAck || !r.YourIPAddr.IsUnspecified() || r.IPAddressLeaseTime(0) != 0 || a.To.String() != "10.9.8.77:68" {
		t.Errorf("inform: %v to %v", r, a.To)
	}
	// Relayed requests are not served.
	relayed := request(t, dhcpv4.MessageTypeDiscover, "52:54:00:00:00:05", "", -1, false)
	relayed.GatewayIPAddr = net.IPv4(10, 1, 1, 1)
	if r, _ := handle(t, s, relayed); r != nil {
		t.Errorf("relayed request answered: %v", r)
	}
	// Port 4011 stays proxy only.
	preq := request(t, dhcpv4.MessageTypeRequest, "52:54:00:00:00:03", "PXEClient:Arch:00000:UNDI:002001", 0, false)
	b, _, err := s.Handle(context.Background(), preq.ToBytes(), 4011)
	if err != nil || b == nil {
		t.Fatalf("port 4011: %v", err)
	}
	if r, err := dhcpv4.FromBytes(b); err != nil || !r.YourIPAddr.IsUnspecified() {
		t.Errorf("port 4011 gave an address: %v %v", r, err)
	}
}

// TestFullDHCPHostile: what one host on the LAN can send must not take
// another client's address or use the server against others: a DECLINE
// of an address leased to someone else changes nothing, an INFORM from
// off the network and a REQUEST for an address outside the range that no
// one asked this server for go unanswered, and a Decider that fails still
// leaves a boot client its address.
func TestFullDHCPHostile(t *testing.T) {
	c := &clock{time.Unix(1_000_000, 0)}
	failing := DeciderFunc(func(context.Context, Client) (Boot, bool, error) {
		return Boot{}, false, errors.New("api server down")
	})
	s := leaseServer(t, c, failing)
	holder := "52:54:00:00:00:01"
	offer, _ := handle(t, s, request(t, dhcpv4.MessageTypeDiscover, holder, "", -1, false))
	if offer == nil {
		t.Fatal("no offer")
	}
	addr := offer.YourIPAddr
	req := request(t, dhcpv4.MessageTypeRequest, holder, "", -1, false)
	req.UpdateOption(dhcpv4.OptRequestedIPAddress(addr))
	req.UpdateOption(dhcpv4.OptServerIdentifier(server))
	if ack, _ := handle(t, s, req); ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("ack: %v", ack)
	}

	decline := request(t, dhcpv4.MessageTypeDecline, "52:54:00:00:00:66", "", -1, false)
	decline.UpdateOption(dhcpv4.OptRequestedIPAddress(addr))
	decline.UpdateOption(dhcpv4.OptServerIdentifier(server))
	handle(t, s, decline)
	renew := request(t, dhcpv4.MessageTypeRequest, holder, "", -1, false)
	renew.ClientIPAddr = addr
	if ack, _ := handle(t, s, renew); ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(addr) {
		t.Errorf("after another host declined %v, its holder's renewal got %v", addr, ack)
	}

	inf := request(t, dhcpv4.MessageTypeInform, "52:54:00:00:00:67", "", -1, false)
	inf.ClientIPAddr = net.IPv4(192, 0, 2, 9)
	if r, a := handle(t, s, inf); r != nil || a.Ignored == nil {
		t.Errorf("INFORM from off the network answered (to %v): %v", a.To, r)
	}

	// In the subnet, outside the range, no server identifier: another
	// server's or a static address; this server has no say.
	reboot := request(t, dhcpv4.MessageTypeRequest, "52:54:00:00:00:68", "", -1, false)
	reboot.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 9, 8, 200)))
	if r, _ := handle(t, s, reboot); r != nil {
		t.Errorf("REQUEST for an address outside the range answered: %v", r)
	}

	pxe := request(t, dhcpv4.MessageTypeDiscover, "52:54:00:00:00:69", "PXEClient:Arch:00000:UNDI:002001", 0, false)
	offer, a := handle(t, s, pxe)
	if offer == nil || !s.Pool.Contains(offer.YourIPAddr) || offer.BootFileName != "" || a.Boot.File != "" {
		t.Errorf("a PXE client whose boot file could not be chosen: %v (boot %+v), want an address without a boot file", offer, a.Boot)
	}
}
