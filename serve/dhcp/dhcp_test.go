package dhcp

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

var server = net.IPv4(10, 9, 8, 1)

func request(t testing.TB, typ dhcpv4.MessageType, mac string, vendor string, arch int, ipxe bool) *dhcpv4.DHCPv4 {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(typ), dhcpv4.WithHwAddr(hw)}
	if vendor != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vendor)))
	}
	if arch >= 0 {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{byte(arch >> 8), byte(arch)}))
	}
	if ipxe {
		mods = append(mods, dhcpv4.WithUserClass("iPXE", false))
	}
	mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}))
	d, err := dhcpv4.New(mods...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestIdentify(t *testing.T) {
	cases := []struct {
		mac, vendor string
		arch        int
		ipxe        bool
		want        Class
		ok          bool
	}{
		{"52:54:00:00:00:01", "PXEClient:Arch:00000:UNDI:002001", 0, false, ClassBIOS, true},
		{"52:54:00:00:00:01", "PXEClient:Arch:00000:UNDI:002001", 0, true, ClassBIOS, true},
		{"52:54:00:00:00:01", "PXEClient:Arch:00007:UNDI:003016", 7, false, ClassEFIx86, true},
		{"52:54:00:00:00:01", "PXEClient:Arch:00006:UNDI:003016", 6, false, ClassEFIx86, true},
		{"52:54:00:00:00:01", "PXEClient:Arch:00009:UNDI:003016", 9, false, ClassEFIx86, true},
		{"52:54:00:00:00:01", "PXEClient:Arch:00011:UNDI:003000", 11, false, ClassEFIArm64, true},
		{"52:54:00:00:00:01", "PXEClient:Arch:00010:UNDI:003000", 10, false, ClassEFIArm64, true},
		{"52:54:00:00:00:01", "HTTPClient:Arch:00016:UNDI:003001", 16, false, ClassHTTPx86, true},
		{"52:54:00:00:00:01", "HTTPClient:Arch:00019:UNDI:003001", 19, false, ClassHTTPArm64, true},
		{"dc:a6:32:01:02:03", "PXEClient:Arch:00000:UNDI:002001", 0, false, ClassPi, true},
		{"b8:27:eb:01:02:03", "PXEClient:Arch:00000:UNDI:002001", 0, false, ClassPi, true},
		{"52:54:00:00:00:01", "", -1, false, ClassNone, false},                                // an ordinary DHCP client
		{"52:54:00:00:00:01", "android-dhcp-13", -1, false, ClassNone, false},                 // idem
		{"52:54:00:00:00:01", "PXEClient:Arch:00002:UNDI:003000", 2, false, ClassNone, false}, // Itanium
		{"52:54:00:00:00:01", "HTTPClient:Arch:00007", 7, false, ClassNone, false},            // HTTPClient claiming PXE arch
	}
	for _, c := range cases {
		req := request(t, dhcpv4.MessageTypeDiscover, c.mac, c.vendor, c.arch, c.ipxe)
		got, err := Identify(req)
		if (err == nil) != c.ok {
			t.Errorf("%+v: error %v", c, err)
			continue
		}
		if c.ok && (got.Class != c.want || got.IPXE != c.ipxe) {
			t.Errorf("%+v: got %v ipxe=%v", c, got.Class, got.IPXE)
		}
	}
}

func fixed(file string) Decider {
	return DeciderFunc(func(_ context.Context, c Client) (Boot, bool, error) {
		return Boot{File: file}, file != "", nil
	})
}

func TestProxyOffer(t *testing.T) {
	s := &Server{ServerIP: server, Decider: fixed("undionly.kpxe")}
	req := request(t, dhcpv4.MessageTypeDiscover, "52:54:00:00:00:01", "PXEClient:Arch:00000:UNDI:002001", 0, false)
	b, a, err := s.Handle(context.Background(), req.ToBytes(), 67)
	if err != nil || b == nil {
		t.Fatalf("no offer: %v %+v", err, a)
	}
	resp, err := dhcpv4.FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if resp.MessageType() != dhcpv4.MessageTypeOffer || resp.TransactionID != req.TransactionID {
		t.Fatalf("reply %v xid %v", resp.MessageType(), resp.TransactionID)
	}
	if !resp.YourIPAddr.IsUnspecified() {
		t.Errorf("a proxy offered address %v", resp.YourIPAddr)
	}
	if !resp.ServerIPAddr.Equal(server) || !resp.ServerIdentifier().Equal(server) {
		t.Errorf("server %v / %v", resp.ServerIPAddr, resp.ServerIdentifier())
	}
	if resp.BootFileName != "undionly.kpxe" || resp.ClassIdentifier() != "PXEClient" {
		t.Errorf("boot file %q, vendor %q", resp.BootFileName, resp.ClassIdentifier())
	}
	if !bytes.Equal(resp.GetOneOption(dhcpv4.OptionVendorSpecificInformation), []byte{6, 1, 8, 255}) {
		t.Errorf("vendor options %x", resp.GetOneOption(dhcpv4.OptionVendorSpecificInformation))
	}
	if !bytes.Equal(resp.GetOneOption(dhcpv4.OptionClientMachineIdentifier), req.GetOneOption(dhcpv4.OptionClientMachineIdentifier)) {
		t.Error("client GUID not echoed")
	}

	// Port 4011: a REQUEST gets an ACK; a DISCOVER there is ignored, as is
	// a REQUEST on port 67 (the DHCP server's business).
	req2 := request(t, dhcpv4.MessageTypeRequest, "52:54:00:00:00:01", "PXEClient:Arch:00000:UNDI:002001", 0, false)
	b, _, err = s.Handle(context.Background(), req2.ToBytes(), 4011)
	if err != nil || b == nil {
		t.Fatalf("no ack on 4011: %v", err)
	}
	if resp, err := dhcpv4.FromBytes(b); err != nil || resp.MessageType() != dhcpv4.MessageTypeAck || resp.BootFileName != "undionly.kpxe" {
		t.Fatalf("4011 reply %v %v", resp, err)
	}
	for _, c := range []struct {
		d    *dhcpv4.DHCPv4
		port int
	}{{req, 4011}, {req2, 67}, {request(t, dhcpv4.MessageTypeDiscover, "52:54:00:00:00:01", "", -1, false), 67}} {
		if b, _, err := s.Handle(context.Background(), c.d.ToBytes(), c.port); err != nil || b != nil {
			t.Errorf("%v on %d answered (%v)", c.d.MessageType(), c.port, err)
		}
	}
}

func TestReplies(t *testing.T) {
	long := "http://10.9.8.1:8080/" + string(bytes.Repeat([]byte("a"), 200))
	cases := []struct {
		mac, vendor string
		arch        int
		file        string
		check       func(t *testing.T, r *dhcpv4.DHCPv4)
	}{
		{"52:54:00:00:00:01", "HTTPClient:Arch:00016:UNDI:003001", 16, "http://10.9.8.1/nixos.efi", func(t *testing.T, r *dhcpv4.DHCPv4) {
			if r.ClassIdentifier() != "HTTPClient" || r.BootFileName != "http://10.9.8.1/nixos.efi" {
				t.Errorf("http boot: vendor %q file %q", r.ClassIdentifier(), r.BootFileName)
			}
		}},
		{"dc:a6:32:01:02:03", "PXEClient:Arch:00000:UNDI:002001", 0, "", func(t *testing.T, r *dhcpv4.DHCPv4) {
			if !bytes.Contains(r.GetOneOption(dhcpv4.OptionVendorSpecificInformation), []byte(PiMenu)) {
				t.Errorf("pi: vendor options %q", r.GetOneOption(dhcpv4.OptionVendorSpecificInformation))
			}
			if r.TFTPServerName() != "10.9.8.1" {
				t.Errorf("pi: tftp server %q", r.TFTPServerName())
			}
		}},
		{"52:54:00:00:00:01", "PXEClient:Arch:00000:UNDI:002001", 0, long, func(t *testing.T, r *dhcpv4.DHCPv4) {
			if r.BootFileName != "" || r.BootFileNameOption() != long {
				t.Errorf("long name: file %q option %q", r.BootFileName, r.BootFileNameOption())
			}
		}},
	}
	for _, c := range cases {
		s := &Server{ServerIP: server, Decider: fixed(c.file)}
		if c.file == "" {
			s.Decider = DeciderFunc(func(context.Context, Client) (Boot, bool, error) { return Boot{}, true, nil })
		}
		req := request(t, dhcpv4.MessageTypeDiscover, c.mac, c.vendor, c.arch, false)
		b, _, err := s.Handle(context.Background(), req.ToBytes(), 67)
		if err != nil || b == nil {
			t.Fatalf("%s: no reply (%v)", c.vendor, err)
		}
		r, err := dhcpv4.FromBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		c.check(t, r)
	}
}

// serveLoopback runs a Server with d on a loopback socket until the test
// ends: c sends it requests, and its broadcast answers arrive on bc.
func serveLoopback(t *testing.T, d Decider) (c net.Conn, bc net.PacketConn) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bc, err = net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bc.Close() })
	s := &Server{ServerIP: server, Decider: d, BroadcastAddr: bc.LocalAddr()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc, 67) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	c, err = net.Dial("udp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bc
}

// TestServe runs the server on loopback sockets: an OFFER reaches the
// broadcast address (here a loopback socket), malformed packets are
// dropped without stopping it.
func TestServe(t *testing.T) {
	c, bc := serveLoopback(t, fixed("ipxe.efi"))
	req := request(t, dhcpv4.MessageTypeDiscover, "52:54:00:00:00:09", "PXEClient:Arch:00007:UNDI:003016", 7, false)
	for _, p := range [][]byte{{1, 2, 3}, bytes.Repeat([]byte{0xff}, 3000), req.ToBytes()} {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1500)
	bc.SetReadDeadline(timeoutIn())
	n, _, err := bc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	r, err := dhcpv4.FromBytes(buf[:n])
	if err != nil || r.BootFileName != "ipxe.efi" || r.TransactionID != req.TransactionID {
		t.Fatalf("offer %v (%v)", r, err)
	}
}

// TestSlowClientDoesNotBlock: a decision that hangs for one client (a slow
// API server) does not delay the answer to another.
func TestSlowClientDoesNotBlock(t *testing.T) {
	slow := DeciderFunc(func(ctx context.Context, c Client) (Boot, bool, error) {
		if c.MAC.String() == "52:54:00:00:00:0a" {
			<-ctx.Done() // until the per-request deadline
			return Boot{}, false, ctx.Err()
		}
		return Boot{File: "undionly.kpxe"}, true, nil
	})
	c, bc := serveLoopback(t, slow)
	for _, mac := range []string{"52:54:00:00:00:0a", "52:54:00:00:00:0b"} {
		if _, err := c.Write(request(t, dhcpv4.MessageTypeDiscover, mac, "PXEClient:Arch:00000:UNDI:002001", 0, false).ToBytes()); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1500)
	start := time.Now()
	bc.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := bc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("the fast client got no answer while the slow one waited: %v", err)
	}
	r, err := dhcpv4.FromBytes(buf[:n])
	if err != nil || r.ClientHWAddr.String() != "52:54:00:00:00:0b" {
		t.Fatalf("answer %v (%v)", r, err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("answer after %v", el)
	}
}
