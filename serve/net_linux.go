package serve

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

func (h HostNetwork) config() *net.ListenConfig {
	return &net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if h.Interface != "" {
				if serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, h.Interface); serr != nil {
					return
				}
			}
			if network == "udp" || network == "udp4" {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
}

// Listen opens a TCP listener.
func (h HostNetwork) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	return h.config().Listen(ctx, network, addr)
}

// ListenPacket opens a UDP socket.
func (h HostNetwork) ListenPacket(ctx context.Context, network, addr string) (net.PacketConn, error) {
	return h.config().ListenPacket(ctx, network, addr)
}
