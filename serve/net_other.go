//go:build !linux

package serve

import (
	"context"
	"errors"
	"net"
)

// Listen opens a TCP listener.
func (h HostNetwork) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	if h.Interface != "" {
		return nil, errors.New("serve: binding to an interface needs Linux")
	}
	return (&net.ListenConfig{}).Listen(ctx, network, addr)
}

// ListenPacket opens a UDP socket.
func (h HostNetwork) ListenPacket(ctx context.Context, network, addr string) (net.PacketConn, error) {
	if h.Interface != "" {
		return nil, errors.New("serve: binding to an interface needs Linux")
	}
	return (&net.ListenConfig{}).ListenPacket(ctx, network, addr)
}
