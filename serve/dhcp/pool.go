package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"strings"
	"sync"
	"time"
)

// Pool is the address range of full DHCP (nbimg serve --dhcp-range): it
// hands out IPv4 addresses from Start to End (both included), never any
// other, and keeps the leases in memory only (a restart forgets them;
// clients then ask again for the address they had, which they get when it
// is still free).
//
// The address offered to a new client is deterministic: the one it asks
// for (option 50) when that is free and in the range, else the first free
// one found probing upwards (wrapping) from a start that is a hash of its
// MAC address, so the same machine tends to get the same address across
// restarts. A client keeps its address while its lease runs; an offer
// holds an address for OfferHold.
type Pool struct {
	start, end uint32
	mask       net.IPMask
	router     net.IP
	dns        []net.IP
	leaseTime  time.Duration
	now        func() time.Time

	mu     sync.Mutex
	byMAC  map[string]*lease
	byAddr map[uint32]*lease
}

type lease struct {
	mac    string
	addr   uint32
	expiry time.Time
	bound  bool // acknowledged, not only offered
}

// OfferHold is how long an offered address stays reserved for the client
// it was offered to.
const OfferHold = time.Minute

// MaxPoolSize bounds a range (a /16 at most).
const MaxPoolSize = 1 << 16

// PoolOptions configure NewPool.
type PoolOptions struct {
	Start, End net.IP
	// Mask is the subnet mask told to clients; the range must lie in the
	// subnet of the server's address.
	Mask net.IPMask
	// Router, when set, is announced as the default gateway (option 3).
	Router net.IP
	// DNS, when set, are announced as the name servers (option 6).
	DNS []net.IP
	// LeaseTime defaults to one hour.
	LeaseTime time.Duration
	// Now defaults to time.Now (tests give a clock).
	Now func() time.Time
}

// ErrRange is returned for a bad --dhcp-range.
var ErrRange = errors.New("dhcp: bad address range")

func ip4(ip net.IP) (uint32, bool) {
	v := ip.To4()
	if v == nil {
		return 0, false
	}
	return binary.BigEndian.Uint32(v), true
}

func ipOf(v uint32) net.IP {
	b := make(net.IP, 4)
	binary.BigEndian.PutUint32(b, v)
	return b
}

// ParseRange reads START,END[,MASK] (MASK dotted, e.g. 255.255.255.0).
func ParseRange(s string) (start, end net.IP, mask net.IPMask, err error) {
	parts := strings.Split(s, ",")
	if len(parts) != 2 && len(parts) != 3 {
		return nil, nil, nil, fmt.Errorf("%w: %q: want START,END[,MASK]", ErrRange, s)
	}
	start, end = net.ParseIP(strings.TrimSpace(parts[0])).To4(), net.ParseIP(strings.TrimSpace(parts[1])).To4()
	if start == nil || end == nil {
		return nil, nil, nil, fmt.Errorf("%w: %q: START and END must be IPv4 addresses", ErrRange, s)
	}
	if len(parts) == 3 {
		m := net.ParseIP(strings.TrimSpace(parts[2])).To4()
		if m == nil {
			return nil, nil, nil, fmt.Errorf("%w: %q: MASK must be dotted IPv4", ErrRange, s)
		}
		mask = net.IPMask(m)
		if ones, bits := mask.Size(); bits == 0 || ones == 0 {
			return nil, nil, nil, fmt.Errorf("%w: %q: %s is not a subnet mask", ErrRange, s, m)
		}
	}
	return start, end, mask, nil
}

// NewPool checks the range against the server's address: both in one
// subnet of the mask (default /24), START <= END, neither the server's
// address nor the subnet's network or broadcast address inside.
func NewPool(server net.IP, o PoolOptions) (*Pool, error) {
	srv, ok := ip4(server)
	if !ok {
		return nil, fmt.Errorf("%w: the server address %v is not IPv4", ErrRange, server)
	}
	s, ok1 := ip4(o.Start)
	e, ok2 := ip4(o.End)
	if !ok1 || !ok2 || s > e {
		return nil, fmt.Errorf("%w: %v-%v", ErrRange, o.Start, o.End)
	}
	if e-s+1 > MaxPoolSize || e-s+1 == 0 {
		return nil, fmt.Errorf("%w: %v-%v holds more than %d addresses", ErrRange, o.Start, o.End, MaxPoolSize)
	}
	mask := o.Mask
	if mask == nil {
		mask = net.CIDRMask(24, 32)
	}
	m := binary.BigEndian.Uint32(mask)
	if s&m != srv&m || e&m != srv&m {
		return nil, fmt.Errorf("%w: %v-%v is not in the subnet of %v/%s", ErrRange, o.Start, o.End, server, net.IP(mask))
	}
	if s <= srv && srv <= e {
		return nil, fmt.Errorf("%w: %v-%v holds the server's own address %v", ErrRange, o.Start, o.End, server)
	}
	if s&^m == 0 || e&^m == ^m {
		return nil, fmt.Errorf("%w: %v-%v holds the subnet's network or broadcast address", ErrRange, o.Start, o.End)
	}
	if o.LeaseTime <= 0 {
		o.LeaseTime = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	var router net.IP
	if o.Router != nil {
		if router = o.Router.To4(); router == nil {
			return nil, fmt.Errorf("%w: the router %v is not IPv4", ErrRange, o.Router)
		}
	}
	var dns []net.IP
	for _, d := range o.DNS {
		v := d.To4()
		if v == nil {
			return nil, fmt.Errorf("%w: the name server %v is not IPv4", ErrRange, d)
		}
		dns = append(dns, v)
	}
	return &Pool{start: s, end: e, mask: mask, router: router, dns: dns, leaseTime: o.LeaseTime, now: o.Now,
		byMAC: map[string]*lease{}, byAddr: map[uint32]*lease{}}, nil
}

// Contains reports whether ip is in the range.
func (p *Pool) Contains(ip net.IP) bool {
	v, ok := ip4(ip)
	return ok && p.start <= v && v <= p.end
}

// InSubnet reports whether ip is in the range's subnet.
func (p *Pool) InSubnet(ip net.IP) bool {
	v, ok := ip4(ip)
	m := binary.BigEndian.Uint32(p.mask)
	return ok && v&m == p.start&m
}

// free reports whether addr can go to mac (locked).
func (p *Pool) free(addr uint32, mac string, now time.Time) bool {
	l := p.byAddr[addr]
	return l == nil || l.mac == mac || now.After(l.expiry)
}

func (p *Pool) drop(l *lease) {
	if p.byAddr[l.addr] == l {
		delete(p.byAddr, l.addr)
	}
	if p.byMAC[l.mac] == l {
		delete(p.byMAC, l.mac)
	}
}

func (p *Pool) set(mac string, addr uint32, d time.Duration, bound bool, now time.Time) {
	if old := p.byMAC[mac]; old != nil {
		p.drop(old)
	}
	if old := p.byAddr[addr]; old != nil {
		p.drop(old)
	}
	l := &lease{mac: mac, addr: addr, expiry: now.Add(d), bound: bound}
	p.byMAC[mac], p.byAddr[addr] = l, l
}

// Offer chooses an address for mac (requested: the client's option 50, or
// nil) and holds it for OfferHold; nil when the range is full.
func (p *Pool) Offer(mac net.HardwareAddr, requested net.IP) net.IP {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	key := mac.String()
	if l := p.byMAC[key]; l != nil && !now.After(l.expiry) {
		if !l.bound {
			l.expiry = now.Add(OfferHold)
		}
		return ipOf(l.addr)
	}
	if r, ok := ip4(requested); ok && p.start <= r && r <= p.end && p.free(r, key, now) {
		p.set(key, r, OfferHold, false, now)
		return ipOf(r)
	}
	n := p.end - p.start + 1
	h := fnv.New32a()
	h.Write(mac)
	first := h.Sum32() % n
	for i := uint32(0); i < n; i++ {
		a := p.start + (first+i)%n
		if p.free(a, key, now) {
			p.set(key, a, OfferHold, false, now)
			return ipOf(a)
		}
	}
	return nil
}

// Request binds ip to mac for the lease time when ip is in the range and
// free for it; false otherwise (the client gets a NAK).
func (p *Pool) Request(mac net.HardwareAddr, ip net.IP) bool {
	v, ok := ip4(ip)
	if !ok || v < p.start || v > p.end {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	key := mac.String()
	if !p.free(v, key, now) {
		return false
	}
	p.set(key, v, p.leaseTime, true, now)
	return true
}

// Release ends mac's lease of ip (DHCPRELEASE), or its offer when the
// client chose another server.
func (p *Pool) Release(mac net.HardwareAddr, ip net.IP) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.byMAC[mac.String()]
	if l == nil {
		return
	}
	if v, ok := ip4(ip); !ok || v == l.addr {
		p.drop(l)
	}
}

// Decline marks ip as in use by someone else (DHCPDECLINE: the client
// found it taken) for a lease time. Only the client the address was
// offered or leased to can decline it: a DECLINE for another client's
// address, or one never given to the sender, changes nothing.
func (p *Pool) Decline(mac net.HardwareAddr, ip net.IP) {
	v, ok := ip4(ip)
	if !ok || v < p.start || v > p.end {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.byMAC[mac.String()]
	if l == nil || l.addr != v {
		return
	}
	p.drop(l)
	now := p.now()
	p.set("declined "+ipOf(v).String(), v, p.leaseTime, true, now)
}

// Lease is one address handed out.
type Lease struct {
	MAC    string
	IP     net.IP
	Expiry time.Time
	Bound  bool
}

// Leases lists the leases and offers that have not expired, by address.
func (p *Pool) Leases() []Lease {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	var out []Lease
	for a := p.start; ; a++ {
		if l := p.byAddr[a]; l != nil && !now.After(l.expiry) {
			out = append(out, Lease{MAC: l.mac, IP: ipOf(a), Expiry: l.expiry, Bound: l.bound})
		}
		if a == p.end {
			break
		}
	}
	return out
}
