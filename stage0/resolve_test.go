package stage0

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"
)

// dnsServer answers A queries for name with addr and every other query
// with no records, on 127.0.0.1 over UDP.
func dnsServer(t *testing.T, name string, addr [4]byte) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := buf[:n]
			if len(q) < 12 {
				continue
			}
			// The question: labels up to the root, then type and class.
			i, qname := 12, ""
			for i < len(q) && q[i] != 0 {
				l := int(q[i])
				if i+1+l > len(q) {
					break
				}
				qname += string(q[i+1:i+1+l]) + "."
				i += 1 + l
			}
			if i+5 > len(q) {
				continue
			}
			qtype := binary.BigEndian.Uint16(q[i+1:])
			question := q[12 : i+5]
			r := append([]byte(nil), q[0:2]...)               // id
			r = append(r, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0) // response, recursion; 1 question
			r = append(r, question...)
			if qname == name && qtype == 1 {
				r[7] = 1 // one answer
				r = append(r, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
				r = append(r, addr[:]...)
			}
			pc.WriteTo(r, from) //nolint:errcheck // the resolver retries
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestResolver: with the lease's DNS servers, host names resolve through
// the first whatever /etc/resolv.conf says.
func TestResolver(t *testing.T) {
	if Resolver(nil) != nil {
		t.Error("a resolver without servers")
	}
	srv := dnsServer(t, "store.nbimg.test.", [4]byte{10, 0, 2, 2})
	servers := []netip.AddrPort{srv, netip.MustParseAddrPort("127.0.0.1:1")}
	if got := parseDNS(formatDNS(servers)); !slices.Equal(got, servers) {
		t.Fatalf("servers through the environment: %v, want %v", got, servers)
	}
	addrs, err := Resolver(servers).LookupHost(context.Background(), "store.nbimg.test")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(addrs, []string{"10.0.2.2"}) {
		t.Errorf("store.nbimg.test is %v, want 10.0.2.2", addrs)
	}
}
