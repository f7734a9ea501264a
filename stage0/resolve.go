package stage0

import (
	"context"
	"net"
	"net/netip"
	"strings"
)

// Resolver returns a resolver that asks the first of the given DNS
// servers (the DHCP lease's) whatever /etc/resolv.conf says: stage 0 runs
// in an initramfs that has none, so store URLs may name hosts. Nil without
// servers.
func Resolver(servers []netip.AddrPort) *net.Resolver {
	if len(servers) == 0 {
		return nil
	}
	server := servers[0].String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, server)
	}}
}

// formatDNS and parseDNS carry the servers to the NBD helper.
func formatDNS(servers []netip.AddrPort) string {
	s := make([]string, len(servers))
	for i, a := range servers {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func parseDNS(s string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, f := range strings.Split(s, ",") {
		if a, err := netip.ParseAddrPort(f); err == nil {
			out = append(out, a)
		}
	}
	return out
}
