package dhcp

import (
	"context"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func timeoutIn() time.Time { return time.Now().Add(5 * time.Second) }

func FuzzHandle(f *testing.F) {
	for _, c := range []struct {
		mac, vendor string
		arch        int
		ipxe        bool
	}{
		{"52:54:00:00:00:01", "PXEClient:Arch:00000:UNDI:002001", 0, false},
		{"52:54:00:00:00:01", "PXEClient:Arch:00007:UNDI:003016", 7, true},
		{"52:54:00:00:00:01", "HTTPClient:Arch:00016:UNDI:003001", 16, false},
		{"dc:a6:32:01:02:03", "PXEClient:Arch:00000:UNDI:002001", 0, false},
	} {
		f.Add(request(f, dhcpv4.MessageTypeDiscover, c.mac, c.vendor, c.arch, c.ipxe).ToBytes(), 67)
		f.Add(request(f, dhcpv4.MessageTypeRequest, c.mac, c.vendor, c.arch, c.ipxe).ToBytes(), 4011)
	}
	s := &Server{ServerIP: server, Decider: DeciderFunc(func(_ context.Context, c Client) (Boot, bool, error) {
		return Boot{File: "http://10.9.8.1/x/" + c.Class.String()}, true, nil
	})}
	f.Fuzz(func(t *testing.T, pkt []byte, port int) {
		if port != 67 {
			port = 4011
		}
		reply, a, err := s.Handle(context.Background(), pkt, port)
		if err != nil || reply == nil {
			return
		}
		r, err := dhcpv4.FromBytes(reply)
		if err != nil {
			t.Fatalf("our reply does not parse: %v", err)
		}
		if !r.YourIPAddr.IsUnspecified() {
			t.Fatalf("offered an address: %v", r.YourIPAddr)
		}
		if a.Client.Class == ClassNone {
			t.Fatalf("answered a client of class none")
		}
		if len(reply) > 1500 {
			t.Fatalf("reply of %d bytes", len(reply))
		}
	})
}

// FuzzHandleLease: full DHCP (a Pool) on hostile packets never panics,
// answers only with parseable replies of at most 1500 bytes, and never
// gives an address outside the range.
func FuzzHandleLease(f *testing.F) {
	for _, typ := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest,
		dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline, dhcpv4.MessageTypeInform} {
		f.Add(request(f, typ, "52:54:00:00:00:01", "", -1, false).ToBytes())
		f.Add(request(f, typ, "52:54:00:00:00:02", "PXEClient:Arch:00007:UNDI:003016", 7, false).ToBytes())
	}
	c := &clock{time.Unix(1_000_000, 0)}
	s := leaseServer(f, c, DeciderFunc(func(_ context.Context, c Client) (Boot, bool, error) {
		return Boot{File: "x/" + c.Class.String()}, true, nil
	}))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		reply, _, err := s.Handle(context.Background(), pkt, 67)
		if err != nil || reply == nil {
			return
		}
		r, err := dhcpv4.FromBytes(reply)
		if err != nil {
			t.Fatalf("our reply does not parse: %v", err)
		}
		if !r.YourIPAddr.IsUnspecified() && !s.Pool.Contains(r.YourIPAddr) {
			t.Fatalf("gave %v, outside the range", r.YourIPAddr)
		}
		if len(reply) > 1500 {
			t.Fatalf("reply of %d bytes", len(reply))
		}
	})
}
