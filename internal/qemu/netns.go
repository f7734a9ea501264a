package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Netns is a network namespace holding a small LAN for one guest that
// boots from servers started in the namespace rather than from QEMU's
// built-in ones: a bridge with the guest's tap device and one end of a
// veth pair, whose other end stands for another host on the LAN (the
// network's own DHCP server, say, beside a proxy DHCP server on the
// bridge). Nothing in it reaches the host's networks.
type Netns struct {
	Name string
	// Tap is the tap device QEMU connects to, a port of Bridge.
	Tap string
	// Bridge has BridgeAddr; Peer, the veth end outside the bridge, has
	// PeerAddr; both in the /Prefix network.
	Bridge, BridgeAddr string
	Peer, PeerAddr     string
	Prefix             int
}

// Network returns the namespace's LAN as a prefix, 10.99.0.0/24.
func (n *Netns) Network() string { return fmt.Sprintf("10.99.0.0/%d", n.Prefix) }

// NewNetns creates the namespace name (needs root and iproute2's ip) with
// loopback up and the LAN.
func NewNetns(ctx context.Context, name string) (*Netns, error) {
	n := &Netns{Name: name, Tap: "nbtap0", Bridge: "nbbr0", BridgeAddr: "10.99.0.1",
		Peer: "nbveth1", PeerAddr: "10.99.0.2", Prefix: 24}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("netns: ip netns add %s: %w\n%s", name, err, out)
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", n.Bridge, "type", "bridge"},
		{"tuntap", "add", "dev", n.Tap, "mode", "tap"},
		{"link", "set", n.Tap, "master", n.Bridge},
		{"link", "add", "nbveth0", "type", "veth", "peer", "name", n.Peer},
		{"link", "set", "nbveth0", "master", n.Bridge},
		{"addr", "add", fmt.Sprintf("%s/%d", n.BridgeAddr, n.Prefix), "dev", n.Bridge},
		{"addr", "add", fmt.Sprintf("%s/%d", n.PeerAddr, n.Prefix), "dev", n.Peer},
		{"link", "set", n.Tap, "up"},
		{"link", "set", "nbveth0", "up"},
		{"link", "set", n.Peer, "up"},
		{"link", "set", n.Bridge, "up"},
	} {
		if out, err := n.Command(ctx, "ip", args...).CombinedOutput(); err != nil {
			n.Close()
			return nil, fmt.Errorf("netns %s: ip %s: %w\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	return n, nil
}

// Command returns a command that runs prog in the namespace.
func (n *Netns) Command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, prog}, args...)...)
}

// NetDev returns the Config.NetDev value that connects a guest to the
// namespace's tap device.
func (n *Netns) NetDev() string {
	return "tap,ifname=" + n.Tap + ",script=no,downscript=no"
}

// Wrapper writes to dir a script that runs QEMU (bin) in the namespace,
// for Config.Binary.
func (n *Netns) Wrapper(dir, bin string) (string, error) {
	p := filepath.Join(dir, "qemu-in-"+n.Name)
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", n.Name, bin)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		return "", fmt.Errorf("netns: %w", err)
	}
	return p, nil
}

// Close deletes the namespace and the devices in it.
func (n *Netns) Close() error {
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("netns: ip netns del %s: %w\n%s", n.Name, err, out)
	}
	return nil
}
