package nbd

// The kernel's generic-netlink interface to the nbd driver
// (linux/nbd-netlink.h): NBD_CMD_CONNECT hands it the negotiated socket
// with a dead-connection timeout, NBD_CMD_LINK_DEAD (a multicast
// notification) says the connection died, and NBD_CMD_RECONFIGURE gives
// it a new socket. Between the two, the kernel holds the device's I/O for
// up to the dead-connection timeout instead of failing it. This file
// builds and parses the messages; netlink_linux.go talks to the kernel.

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Generic netlink names and numbers (linux/genetlink.h, nbd-netlink.h).
const (
	genlFamilyName = "nbd"
	genlGroupName  = "nbd_mc_group"
	genlVersion    = 1

	genlIDCtrl          = 0x10 // GENL_ID_CTRL
	ctrlCmdGetFamily    = 3
	ctrlAttrFamilyID    = 1
	ctrlAttrFamilyName  = 2
	ctrlAttrMcastGroups = 7
	ctrlAttrGrpName     = 1
	ctrlAttrGrpID       = 2

	cmdConnect     = 1
	cmdReconfigure = 3
	cmdLinkDead    = 4

	attrIndex           = 1
	attrSizeBytes       = 2
	attrBlockSizeBytes  = 3
	attrTimeout         = 4
	attrServerFlags     = 5
	attrSockets         = 7
	attrDeadConnTimeout = 8
	sockItem            = 1
	sockFD              = 1

	nlmsgHdrLen  = 16
	genlHdrLen   = 4
	nlmsgError   = 2
	nlmsgDone    = 3
	nlmFRequest  = 0x1
	nlmFAck      = 0x4
	nlaFNested   = 0x8000
	nlaTypeMask  = 0x3fff
	nlaHdrLen    = 4
	nlaAlignment = 4
)

// ErrNetlink wraps malformed or refused netlink exchanges.
var ErrNetlink = errors.New("nbd: netlink")

// attrs is a netlink attribute list being built.
type attrs []byte

func align(n int) int { return (n + nlaAlignment - 1) &^ (nlaAlignment - 1) }

func (a attrs) put(typ uint16, payload []byte) attrs {
	a = binary.NativeEndian.AppendUint16(a, uint16(nlaHdrLen+len(payload)))
	a = binary.NativeEndian.AppendUint16(a, typ)
	a = append(a, payload...)
	for len(a)%nlaAlignment != 0 {
		a = append(a, 0)
	}
	return a
}

func (a attrs) u32(typ uint16, v uint32) attrs {
	return a.put(typ, binary.NativeEndian.AppendUint32(nil, v))
}

func (a attrs) u64(typ uint16, v uint64) attrs {
	return a.put(typ, binary.NativeEndian.AppendUint64(nil, v))
}

func (a attrs) nested(typ uint16, inner attrs) attrs { return a.put(typ|nlaFNested, inner) }

// genlMessage is one generic netlink request: header, genl header, attrs.
func genlMessage(family uint16, cmd uint8, seq uint32, a attrs) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(nlmsgHdrLen+genlHdrLen+len(a)))
	b = binary.NativeEndian.AppendUint16(b, family)
	b = binary.NativeEndian.AppendUint16(b, nlmFRequest|nlmFAck)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // port: the kernel fills it in
	b = append(b, cmd, genlVersion, 0, 0)
	return append(b, a...)
}

// ConnectOptions are the kernel-side settings of a netlink connection.
type ConnectOptions struct {
	// Index of the device (0: /dev/nbd0).
	Index uint32
	// TimeoutSeconds: a request unanswered this long marks the
	// connection dead and is queued again (0: the kernel waits forever
	// and never notices a silent server).
	TimeoutSeconds uint64
	// DeadConnSeconds: how long I/O waits for a new connection after the
	// connection died before it fails.
	DeadConnSeconds uint64
}

func socketsAttr(fd int) attrs {
	return attrs(nil).nested(sockItem, attrs(nil).u32(sockFD, uint32(fd)))
}

// connectMessage is NBD_CMD_CONNECT for export ex over the socket fd.
func connectMessage(family uint16, seq uint32, ex Export, fd int, o ConnectOptions) []byte {
	a := attrs(nil).u32(attrIndex, o.Index).
		u64(attrSizeBytes, ex.Size).
		u64(attrBlockSizeBytes, BlockSize).
		u64(attrServerFlags, uint64(ex.Flags)).
		u64(attrTimeout, o.TimeoutSeconds).
		u64(attrDeadConnTimeout, o.DeadConnSeconds).
		nested(attrSockets, socketsAttr(fd))
	return genlMessage(family, cmdConnect, seq, a)
}

// reconfigureMessage is NBD_CMD_RECONFIGURE giving device index the new
// socket fd.
func reconfigureMessage(family uint16, seq uint32, index uint32, fd int) []byte {
	a := attrs(nil).u32(attrIndex, index).nested(attrSockets, socketsAttr(fd))
	return genlMessage(family, cmdReconfigure, seq, a)
}

// getFamilyMessage asks the generic netlink controller for the nbd
// family.
func getFamilyMessage(seq uint32) []byte {
	return genlMessage(genlIDCtrl, ctrlCmdGetFamily, seq, attrs(nil).put(ctrlAttrFamilyName, append([]byte(genlFamilyName), 0)))
}

// nlMessage is one parsed netlink message.
type nlMessage struct {
	typ   uint16
	seq   uint32
	cmd   uint8  // generic netlink command (not for errors)
	attrs []byte // generic netlink attributes
	errno int32  // NLMSG_ERROR: 0 is an acknowledgement
	isErr bool   // an NLMSG_ERROR message
}

// parseMessages splits a datagram into netlink messages.
func parseMessages(b []byte) ([]nlMessage, error) {
	var out []nlMessage
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return nil, fmt.Errorf("%w: truncated message header (%d bytes)", ErrNetlink, len(b))
		}
		n := int(binary.NativeEndian.Uint32(b))
		if n < nlmsgHdrLen || n > len(b) {
			return nil, fmt.Errorf("%w: message length %d of %d bytes", ErrNetlink, n, len(b))
		}
		m := nlMessage{typ: binary.NativeEndian.Uint16(b[4:]), seq: binary.NativeEndian.Uint32(b[8:])}
		body := b[nlmsgHdrLen:n]
		switch m.typ {
		case nlmsgError:
			if len(body) < 4 {
				return nil, fmt.Errorf("%w: truncated error message", ErrNetlink)
			}
			m.isErr = true
			m.errno = int32(binary.NativeEndian.Uint32(body))
		case nlmsgDone:
		default:
			if len(body) < genlHdrLen {
				return nil, fmt.Errorf("%w: truncated generic netlink header", ErrNetlink)
			}
			m.cmd = body[0]
			m.attrs = body[genlHdrLen:]
		}
		out = append(out, m)
		if a := align(n); a < len(b) {
			b = b[a:]
		} else {
			b = nil
		}
	}
	return out, nil
}

// parseAttrs returns the attributes of a list by type (flags masked; the
// last of a repeated type wins).
func parseAttrs(b []byte) (map[uint16][]byte, error) {
	out := map[uint16][]byte{}
	err := eachAttr(b, func(typ uint16, p []byte) { out[typ] = p })
	return out, err
}

func eachAttr(b []byte, f func(typ uint16, payload []byte)) error {
	for len(b) > 0 {
		if len(b) < nlaHdrLen {
			return fmt.Errorf("%w: truncated attribute", ErrNetlink)
		}
		n := int(binary.NativeEndian.Uint16(b))
		if n < nlaHdrLen || n > len(b) {
			return fmt.Errorf("%w: attribute length %d of %d bytes", ErrNetlink, n, len(b))
		}
		f(binary.NativeEndian.Uint16(b[2:])&nlaTypeMask, b[nlaHdrLen:n])
		if a := align(n); a < len(b) {
			b = b[a:]
		} else {
			b = nil
		}
	}
	return nil
}

// family is what the controller says about the nbd family.
type family struct {
	id    uint16
	group uint32 // multicast group of link-dead notifications (0: none)
}

// parseFamily reads a CTRL_CMD_NEWFAMILY reply's attributes.
func parseFamily(b []byte) (family, error) {
	a, err := parseAttrs(b)
	if err != nil {
		return family{}, err
	}
	id, ok := a[ctrlAttrFamilyID]
	if !ok || len(id) < 2 {
		return family{}, fmt.Errorf("%w: the controller's reply has no family id", ErrNetlink)
	}
	f := family{id: binary.NativeEndian.Uint16(id)}
	var perr error
	if groups, ok := a[ctrlAttrMcastGroups]; ok {
		perr = eachAttr(groups, func(_ uint16, g []byte) {
			ga, err := parseAttrs(g)
			if err != nil {
				perr = err
				return
			}
			name, gid := ga[ctrlAttrGrpName], ga[ctrlAttrGrpID]
			if string(trimNUL(name)) == genlGroupName && len(gid) >= 4 {
				f.group = binary.NativeEndian.Uint32(gid)
			}
		})
	}
	return f, perr
}

func trimNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// linkDeadIndex returns the device index of an NBD_CMD_LINK_DEAD
// notification, and false for any other message.
func linkDeadIndex(m nlMessage, familyID uint16) (uint32, bool) {
	if m.isErr || m.typ != familyID || m.cmd != cmdLinkDead {
		return 0, false
	}
	a, err := parseAttrs(m.attrs)
	if err != nil || len(a[attrIndex]) < 4 {
		return 0, false
	}
	return binary.NativeEndian.Uint32(a[attrIndex]), true
}
