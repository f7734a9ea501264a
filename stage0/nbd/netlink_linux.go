package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Netlink is a generic netlink socket bound to the kernel's nbd family.
type Netlink struct {
	fd  int
	fam family
	seq uint32
	// file, for an inherited socket, keeps the *os.File that owns fd
	// reachable: the garbage collector would otherwise close fd when it
	// finalizes the file.
	file *os.File
}

// OpenNetlink opens a generic netlink socket and looks up the nbd family
// (the nbd module must be loaded). It fails on kernels without the
// netlink interface (before 4.12).
func OpenNetlink() (*Netlink, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("%w: socket: %w", ErrNetlink, err)
	}
	n := &Netlink{fd: fd}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		n.Close()
		return nil, fmt.Errorf("%w: bind: %w", ErrNetlink, err)
	}
	msgs, err := n.request(getFamilyMessage(n.next()))
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("%w: looking up the %q family (no nbd module?): %w", ErrNetlink, genlFamilyName, err)
	}
	for _, m := range msgs {
		if !m.isErr && m.typ == genlIDCtrl {
			if n.fam, err = parseFamily(m.attrs); err != nil {
				n.Close()
				return nil, err
			}
			return n, nil
		}
	}
	n.Close()
	return nil, fmt.Errorf("%w: the controller did not describe the %q family", ErrNetlink, genlFamilyName)
}

// NetlinkFromFile wraps an inherited netlink socket (see File) whose
// family the parent looked up.
func NetlinkFromFile(f *os.File, familyID uint16) *Netlink {
	return &Netlink{fd: int(f.Fd()), fam: family{id: familyID}, file: f}
}

// File returns a duplicate of the socket as a file (for a child process)
// and the family id it needs with NetlinkFromFile.
func (n *Netlink) File() (*os.File, uint16, error) {
	fd, err := unix.Dup(n.fd)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrNetlink, err)
	}
	return os.NewFile(uintptr(fd), "nbd-netlink"), n.fam.id, nil
}

// Close closes the socket.
func (n *Netlink) Close() error {
	if n.file != nil {
		return n.file.Close()
	}
	return unix.Close(n.fd)
}

func (n *Netlink) next() uint32 { n.seq++; return n.seq }

// request sends one message and reads replies up to its acknowledgement,
// returning the messages before it. An NLMSG_ERROR with an errno is the
// kernel's refusal.
func (n *Netlink) request(msg []byte) ([]nlMessage, error) {
	seq := binary.NativeEndian.Uint32(msg[8:])
	if err := unix.Sendto(n.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out []nlMessage
	buf := make([]byte, 1<<16)
	for {
		k, _, err := unix.Recvfrom(n.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, err
		}
		// The messages kept point into the datagram: copy it out of the
		// buffer the next read reuses.
		msgs, err := parseMessages(append([]byte(nil), buf[:k]...))
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.seq != seq {
				continue // a notification, or a reply to something else
			}
			if m.isErr {
				if m.errno != 0 {
					return nil, unix.Errno(-m.errno)
				}
				return out, nil
			}
			out = append(out, m)
		}
	}
}

// Connect hands the negotiated connection sock for export ex to the
// kernel: /dev/nbd<Index> serves it until a disconnect, and no process
// has to stay in a system call for it.
func (n *Netlink) Connect(sock *os.File, ex Export, o ConnectOptions) error {
	if ex.Size%BlockSize != 0 {
		return fmt.Errorf("nbd: export size %d is not a multiple of %d", ex.Size, BlockSize)
	}
	if _, err := n.request(connectMessage(n.fam.id, n.next(), ex, int(sock.Fd()), o)); err != nil {
		return fmt.Errorf("%w: NBD_CMD_CONNECT on /dev/nbd%d: %w", ErrNetlink, o.Index, err)
	}
	return nil
}

// Reconfigure gives device index a new connection sock in place of its
// dead one.
func (n *Netlink) Reconfigure(index uint32, sock *os.File) error {
	if _, err := n.request(reconfigureMessage(n.fam.id, n.next(), index, int(sock.Fd()))); err != nil {
		return fmt.Errorf("%w: NBD_CMD_RECONFIGURE on /dev/nbd%d: %w", ErrNetlink, index, err)
	}
	return nil
}

// Subscribe joins the multicast group of link-dead notifications.
func (n *Netlink) Subscribe() error {
	if n.fam.group == 0 {
		return fmt.Errorf("%w: the nbd family has no %q multicast group", ErrNetlink, genlGroupName)
	}
	if err := unix.SetsockoptInt(n.fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(n.fam.group)); err != nil {
		return fmt.Errorf("%w: joining %q: %w", ErrNetlink, genlGroupName, err)
	}
	return nil
}

// WaitLinkDead blocks until the kernel reports a dead connection on
// device index (on a subscribed socket).
func (n *Netlink) WaitLinkDead(index uint32) error {
	buf := make([]byte, 1<<16)
	for {
		k, _, err := unix.Recvfrom(n.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOBUFS) {
				continue
			}
			return fmt.Errorf("%w: %w", ErrNetlink, err)
		}
		msgs, err := parseMessages(buf[:k])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if i, ok := linkDeadIndex(m, n.fam.id); ok && i == index {
				return nil
			}
		}
	}
}
