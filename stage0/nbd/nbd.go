// Package nbd is the client side of the NBD protocol's handshake (fixed
// newstyle negotiation, NBD_OPT_GO with a fallback to
// NBD_OPT_EXPORT_NAME) and, on Linux, the hand-over of the negotiated
// connection to the kernel's nbd driver: through generic netlink
// (NBD_CMD_CONNECT with a dead-connection timeout, NBD_CMD_RECONFIGURE
// with a new connection after an NBD_CMD_LINK_DEAD notification), or
// through the older ioctls (NBD_SET_SOCK ... NBD_DO_IT), which cannot
// replace a dead connection.
//
// The transmission phase is the kernel's: this package never reads blocks
// itself. Limits: no TLS (NBD_OPT_STARTTLS), no structured replies, no
// oldstyle servers (every maintained server speaks newstyle).
package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Protocol constants (the NBD protocol document's names).
const (
	magicInit      = 0x4e42444d41474943 // "NBDMAGIC"
	magicOpt       = 0x49484156454f5054 // "IHAVEOPT"
	magicOldstyle  = 0x00420281861253
	magicReply     = 0x3e889045565a9
	flagFixed      = 1 << 0 // server handshake flag / client flag
	flagNoZeroes   = 1 << 1
	optExportName  = 1
	optAbort       = 2
	optGo          = 7
	repAck         = 1
	repInfo        = 3
	repErrUnsup    = 1<<31 + 1
	repErrUnknown  = 1<<31 + 6
	infoExport     = 0
	maxReplyLength = 64 * 1024
)

// Transmission flags the server sends.
const (
	FlagHasFlags = 1 << 0
	FlagReadOnly = 1 << 1
)

// Errors.
var (
	ErrProtocol = errors.New("nbd: protocol error")
	ErrExport   = errors.New("nbd: the server refused the export")
)

// Export is what the handshake learns about the export.
type Export struct {
	Size  uint64
	Flags uint16 // transmission flags
}

// Handshake negotiates the named export on rw (a fresh connection to an
// NBD server). On success the connection is ready for the transmission
// phase.
func Handshake(rw io.ReadWriter, export string) (Export, error) {
	var hdr [18]byte
	if _, err := io.ReadFull(rw, hdr[:16]); err != nil {
		return Export{}, fmt.Errorf("%w: reading the greeting: %w", ErrProtocol, err)
	}
	if binary.BigEndian.Uint64(hdr[0:]) != magicInit {
		return Export{}, fmt.Errorf("%w: not an NBD server (no NBDMAGIC)", ErrProtocol)
	}
	switch m := binary.BigEndian.Uint64(hdr[8:]); m {
	case magicOpt:
	case magicOldstyle:
		return Export{}, fmt.Errorf("%w: oldstyle server, not supported", ErrProtocol)
	default:
		return Export{}, fmt.Errorf("%w: unknown handshake magic %#x", ErrProtocol, m)
	}
	if _, err := io.ReadFull(rw, hdr[16:18]); err != nil {
		return Export{}, fmt.Errorf("%w: reading the handshake flags: %w", ErrProtocol, err)
	}
	sflags := binary.BigEndian.Uint16(hdr[16:])
	if sflags&flagFixed == 0 {
		return Export{}, fmt.Errorf("%w: server does not speak fixed newstyle", ErrProtocol)
	}
	cflags := uint32(flagFixed)
	if sflags&flagNoZeroes != 0 {
		cflags |= flagNoZeroes
	}
	if err := binary.Write(rw, binary.BigEndian, cflags); err != nil {
		return Export{}, fmt.Errorf("nbd: %w", err)
	}

	// NBD_OPT_GO: name length, name, no information requests.
	data := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	data = append(data, export...)
	data = binary.BigEndian.AppendUint16(data, 0)
	if err := sendOption(rw, optGo, data); err != nil {
		return Export{}, err
	}
	var ex Export
	haveInfo := false
	for {
		typ, payload, err := readReply(rw, optGo)
		if err != nil {
			return Export{}, err
		}
		switch {
		case typ == repInfo:
			if len(payload) >= 2 && binary.BigEndian.Uint16(payload) == infoExport {
				if len(payload) != 12 {
					return Export{}, fmt.Errorf("%w: NBD_INFO_EXPORT of %d bytes", ErrProtocol, len(payload))
				}
				ex.Size = binary.BigEndian.Uint64(payload[2:])
				ex.Flags = binary.BigEndian.Uint16(payload[10:])
				haveInfo = true
			}
		case typ == repAck:
			if !haveInfo {
				return Export{}, fmt.Errorf("%w: NBD_OPT_GO acknowledged without the export's size", ErrProtocol)
			}
			return ex, nil
		case typ == repErrUnsup:
			return exportName(rw, export, sflags&flagNoZeroes != 0)
		case typ == repErrUnknown:
			return Export{}, fmt.Errorf("%w: no export named %q%s", ErrExport, export, message(payload))
		case typ&(1<<31) != 0:
			return Export{}, fmt.Errorf("%w: %q: error %#x%s", ErrExport, export, typ, message(payload))
		default:
			return Export{}, fmt.Errorf("%w: unexpected reply %d to NBD_OPT_GO", ErrProtocol, typ)
		}
	}
}

func message(p []byte) string {
	if len(p) == 0 {
		return ""
	}
	return ": " + string(p)
}

// exportName is the pre-NBD_OPT_GO way to pick an export.
func exportName(rw io.ReadWriter, export string, noZeroes bool) (Export, error) {
	if err := sendOption(rw, optExportName, []byte(export)); err != nil {
		return Export{}, err
	}
	n := 10
	if !noZeroes {
		n += 124
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(rw, b); err != nil {
		return Export{}, fmt.Errorf("%w: export %q: the server closed the connection (no such export?): %w", ErrExport, export, err)
	}
	return Export{Size: binary.BigEndian.Uint64(b), Flags: binary.BigEndian.Uint16(b[8:])}, nil
}

func sendOption(w io.Writer, opt uint32, data []byte) error {
	b := binary.BigEndian.AppendUint64(nil, magicOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("nbd: sending option %d: %w", opt, err)
	}
	return nil
}

func readReply(r io.Reader, opt uint32) (uint32, []byte, error) {
	var h [20]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, fmt.Errorf("%w: reading an option reply: %w", ErrProtocol, err)
	}
	if binary.BigEndian.Uint64(h[0:]) != magicReply {
		return 0, nil, fmt.Errorf("%w: bad option reply magic", ErrProtocol)
	}
	if got := binary.BigEndian.Uint32(h[8:]); got != opt {
		return 0, nil, fmt.Errorf("%w: reply to option %d, asked %d", ErrProtocol, got, opt)
	}
	typ := binary.BigEndian.Uint32(h[12:])
	n := binary.BigEndian.Uint32(h[16:])
	if n > maxReplyLength {
		return 0, nil, fmt.Errorf("%w: option reply of %d bytes", ErrProtocol, n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, fmt.Errorf("%w: reading an option reply: %w", ErrProtocol, err)
	}
	return typ, p, nil
}
