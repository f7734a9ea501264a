package dhcp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNoAnswer is returned when no server answered in time.
var ErrNoAnswer = errors.New("dhcp: no answer")

// Up brings the interface up.
func Up(ifname string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("dhcp: %s: %w", ifname, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("dhcp: bringing %s up: %w", ifname, err)
	}
	return nil
}

// Obtain runs DISCOVER/OFFER/REQUEST/ACK on ifname until ctx ends,
// resending every few seconds.
func Obtain(ctx context.Context, ifname string) (Lease, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return Lease{}, fmt.Errorf("dhcp: %w", err)
	}
	conn, err := listen(ifname)
	if err != nil {
		return Lease{}, err
	}
	defer conn.Close()
	go func() { <-ctx.Done(); conn.SetDeadline(time.Now()) }() //nolint:errcheck // unblocks reads
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: 67}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		xid := rand.Uint32()
		if _, err := conn.WriteTo(Build(Discover, xid, ifi.HardwareAddr, nil), bcast); err != nil {
			return Lease{}, fmt.Errorf("dhcp: sending on %s: %w", ifname, err)
		}
		offer, err := await(ctx, conn, xid, Offer, 3*time.Second)
		if err != nil {
			continue
		}
		if _, err := conn.WriteTo(Build(Request, xid, ifi.HardwareAddr, &offer), bcast); err != nil {
			return Lease{}, fmt.Errorf("dhcp: sending on %s: %w", ifname, err)
		}
		ack, err := await(ctx, conn, xid, Ack, 3*time.Second)
		if err != nil {
			continue
		}
		return ack, nil
	}
	return Lease{}, fmt.Errorf("%w on %s", ErrNoAnswer, ifname)
}

func await(ctx context.Context, conn net.PacketConn, xid uint32, typ int, wait time.Duration) (Lease, error) {
	deadline := time.Now().Add(wait)
	buf := make([]byte, 1500)
	for ctx.Err() == nil {
		conn.SetReadDeadline(deadline) //nolint:errcheck // a UDP socket supports deadlines
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			return Lease{}, err
		}
		l, err := Parse(buf[:n])
		if err != nil || l.XID != xid {
			continue
		}
		if l.Type == Nak {
			return Lease{}, errors.New("dhcp: server said NAK")
		}
		if l.Type == typ {
			return l, nil
		}
	}
	return Lease{}, ctx.Err()
}

func listen(ifname string) (net.PacketConn, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("dhcp: %w", err)
	}
	for _, o := range []struct {
		level, opt int
	}{{unix.SOL_SOCKET, unix.SO_REUSEADDR}, {unix.SOL_SOCKET, unix.SO_BROADCAST}} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, 1); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("dhcp: %w", err)
		}
	}
	if err := unix.BindToDevice(fd, ifname); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("dhcp: binding to %s: %w", ifname, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: 68}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("dhcp: binding port 68: %w", err)
	}
	f := os.NewFile(uintptr(fd), "dhcp")
	defer f.Close()
	c, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("dhcp: %w", err)
	}
	return c, nil
}

// rtentry is struct rtentry of linux/route.h (its C layout on 64- and
// 32-bit targets follows from Go's alignment of these fields).
type rtentry struct {
	pad1    uintptr
	dst     unix.RawSockaddrInet4
	gateway unix.RawSockaddrInet4
	genmask unix.RawSockaddrInet4
	flags   uint16
	pad2    int16
	pad3    uintptr
	pad4    uintptr
	metric  int16
	dev     uintptr
	mtu     uintptr
	window  uintptr
	irtt    uint16
}

func sockaddr4(a netip.Addr) unix.RawSockaddrInet4 {
	return unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
}

// Configure sets the lease's address and netmask on ifname and, when it
// names a router, a default route through it.
func Configure(ifname string, l Lease) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	defer unix.Close(fd)
	p := l.Prefix()
	mask := net.CIDRMask(p.Bits(), 32)
	for _, s := range []struct {
		req  uint
		addr netip.Addr
		what string
	}{
		{unix.SIOCSIFADDR, l.Addr, "address"},
		{unix.SIOCSIFNETMASK, netip.AddrFrom4([4]byte(mask)), "netmask"},
	} {
		ifr, err := unix.NewIfreq(ifname)
		if err != nil {
			return fmt.Errorf("dhcp: %w", err)
		}
		if err := ifr.SetInet4Addr(s.addr.AsSlice()); err != nil {
			return fmt.Errorf("dhcp: %w", err)
		}
		if err := unix.IoctlIfreq(fd, s.req, ifr); err != nil {
			return fmt.Errorf("dhcp: setting the %s of %s to %s: %w", s.what, ifname, s.addr, err)
		}
	}
	if !l.Router.IsValid() || l.Router.IsUnspecified() {
		return nil
	}
	name := append([]byte(ifname), 0)
	rt := rtentry{
		dst:     sockaddr4(netip.IPv4Unspecified()),
		gateway: sockaddr4(l.Router),
		genmask: sockaddr4(netip.IPv4Unspecified()),
		flags:   unix.RTF_UP | unix.RTF_GATEWAY,
		dev:     uintptr(unsafe.Pointer(&name[0])),
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCADDRT, uintptr(unsafe.Pointer(&rt)))
	runtime.KeepAlive(name)
	if errno != 0 && errno != unix.EEXIST {
		return fmt.Errorf("dhcp: default route via %s on %s: %w", l.Router, ifname, errno)
	}
	return nil
}
