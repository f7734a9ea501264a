package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Opcodes (RFC 1350, RFC 2347).
const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// Error codes (RFC 1350, RFC 2347).
const (
	errUndefined    = 0
	errNotFound     = 1
	errAccess       = 2
	errIllegalOp    = 4
	errUnknownTID   = 5
	errOptionDenied = 8
)

// Limits on what a request may ask for.
const (
	DefaultBlockSize = 512
	MinBlockSize     = 8
	MaxBlockSize     = 65464 // RFC 2348
	// MaxWindowSize bounds RFC 7440's windowsize: a window is re-read from
	// the file on loss, so it costs no memory, only packets in flight.
	MaxWindowSize = 64
	maxRequest    = 1024 // longest RRQ accepted (a packet, not a stream)
)

// ErrMalformed is returned for a packet that is not a valid TFTP request.
var ErrMalformed = errors.New("tftp: malformed packet")

// Request is a parsed read or write request.
type Request struct {
	Write    bool   // a WRQ (always refused: the server is read-only)
	Filename string // as sent
	Mode     string // lower case: "octet" or "netascii"
	// Options holds the RFC 2347 options in lower case, in the order sent.
	Options []Option
}

// Option is one RFC 2347 option of a request.
type Option struct{ Name, Value string }

// ParseRequest parses a RRQ or WRQ packet.
func ParseRequest(p []byte) (*Request, error) {
	if len(p) < 4 {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(p))
	}
	if len(p) > maxRequest {
		return nil, fmt.Errorf("%w: request of %d bytes", ErrMalformed, len(p))
	}
	op := binary.BigEndian.Uint16(p)
	if op != opRRQ && op != opWRQ {
		return nil, fmt.Errorf("%w: opcode %d is not a request", ErrMalformed, op)
	}
	if p[len(p)-1] != 0 {
		return nil, fmt.Errorf("%w: request not NUL-terminated", ErrMalformed)
	}
	fields := bytes.Split(p[2:len(p)-1], []byte{0})
	if len(fields) < 2 || len(fields)%2 != 0 {
		return nil, fmt.Errorf("%w: %d fields", ErrMalformed, len(fields))
	}
	r := &Request{Write: op == opWRQ, Filename: string(fields[0]), Mode: strings.ToLower(string(fields[1]))}
	if r.Filename == "" {
		return nil, fmt.Errorf("%w: empty file name", ErrMalformed)
	}
	if r.Mode != "octet" && r.Mode != "netascii" {
		return nil, fmt.Errorf("%w: mode %q", ErrMalformed, r.Mode)
	}
	for i := 2; i < len(fields); i += 2 {
		r.Options = append(r.Options, Option{strings.ToLower(string(fields[i])), string(fields[i+1])})
	}
	return r, nil
}

// Negotiated holds the transfer parameters after option negotiation.
type Negotiated struct {
	BlockSize  int
	WindowSize int
	TimeoutSec int  // 0: the server's default
	WantSize   bool // tsize was asked for
	// Ack lists the options to acknowledge in an OACK, in request order.
	Ack []Option
}

// Negotiate applies RFC 2347-2349 and RFC 7440 to a request's options.
// Unknown options are ignored; out-of-range values are clamped or
// ignored as the RFCs allow; size is the file's size (for tsize).
// maxBlock bounds the block size (the path MTU, say).
func Negotiate(opts []Option, size int64, maxBlock int) Negotiated {
	n := Negotiated{BlockSize: DefaultBlockSize, WindowSize: 1}
	if maxBlock <= 0 || maxBlock > MaxBlockSize {
		maxBlock = MaxBlockSize
	}
	seen := map[string]bool{}
	for _, o := range opts {
		if seen[o.Name] {
			continue
		}
		seen[o.Name] = true
		v, err := strconv.Atoi(o.Value)
		switch o.Name {
		case "blksize":
			if err != nil || v < MinBlockSize {
				continue
			}
			n.BlockSize = min(v, maxBlock)
			n.Ack = append(n.Ack, Option{o.Name, strconv.Itoa(n.BlockSize)})
		case "windowsize":
			if err != nil || v < 1 {
				continue
			}
			n.WindowSize = min(v, MaxWindowSize)
			n.Ack = append(n.Ack, Option{o.Name, strconv.Itoa(n.WindowSize)})
		case "timeout":
			if err != nil || v < 1 || v > 255 {
				continue
			}
			n.TimeoutSec = v
			n.Ack = append(n.Ack, Option{o.Name, o.Value})
		case "tsize":
			n.WantSize = true
			n.Ack = append(n.Ack, Option{o.Name, strconv.FormatInt(size, 10)})
		}
	}
	return n
}

// appendOACK encodes an OACK packet.
func appendOACK(b []byte, opts []Option) []byte {
	b = binary.BigEndian.AppendUint16(b, opOACK)
	for _, o := range opts {
		b = append(b, o.Name...)
		b = append(b, 0)
		b = append(b, o.Value...)
		b = append(b, 0)
	}
	return b
}

// appendError encodes an ERROR packet.
func appendError(b []byte, code uint16, msg string) []byte {
	b = binary.BigEndian.AppendUint16(b, opERROR)
	b = binary.BigEndian.AppendUint16(b, code)
	b = append(b, msg...)
	return append(b, 0)
}

// parseAck returns the block number of an ACK, or an error code and
// message for an ERROR packet (the client gave up).
func parseAck(p []byte) (block uint16, clientErr string, err error) {
	if len(p) < 4 {
		return 0, "", fmt.Errorf("%w: %d bytes", ErrMalformed, len(p))
	}
	switch binary.BigEndian.Uint16(p) {
	case opACK:
		return binary.BigEndian.Uint16(p[2:]), "", nil
	case opERROR:
		msg := p[4:]
		if i := bytes.IndexByte(msg, 0); i >= 0 {
			msg = msg[:i]
		}
		return 0, fmt.Sprintf("code %d: %q", binary.BigEndian.Uint16(p[2:]), msg), nil
	default:
		return 0, "", fmt.Errorf("%w: opcode %d during a transfer", ErrMalformed, binary.BigEndian.Uint16(p))
	}
}
