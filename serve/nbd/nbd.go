// Package nbd is a read-only NBD server: the fixed newstyle handshake
// with NBD_OPT_EXPORT_NAME, NBD_OPT_LIST, NBD_OPT_INFO, NBD_OPT_GO,
// NBD_OPT_STRUCTURED_REPLY and NBD_OPT_ABORT, then NBD_CMD_READ, FLUSH,
// CACHE and DISC. Writes, trims and zero writes get EPERM (as a
// structured error chunk with a message once structured replies are on);
// a write's payload is read and dropped so the connection stays in step,
// up to MaxPayload, past which the connection is closed.
//
// Each connection runs in its own goroutine and serves its requests in
// order with one read buffer of at most MaxPayload; the handshake has a
// deadline, option payloads are bounded, and a malformed request closes
// that connection only. TLS, block status and the extended headers are
// not offered. The protocol is the one in the NBD project's proto.md.
package nbd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Protocol constants (proto.md).
const (
	magicNBD        = 0x4e42444d41474943 // "NBDMAGIC"
	magicOpt        = 0x49484156454f5054 // "IHAVEOPT"
	magicOptReply   = 0x0003e889045565a9
	magicRequest    = 0x25609513
	magicSimple     = 0x67446698
	magicStructured = 0x668e33ef

	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1

	optExportName      = 1
	optAbort           = 2
	optList            = 3
	optStartTLS        = 5
	optInfo            = 6
	optGo              = 7
	optStructuredReply = 8

	repAck         = 1
	repServer      = 2
	repInfo        = 3
	repFlagError   = 1 << 31
	repErrUnsup    = repFlagError | 1
	repErrPolicy   = repFlagError | 2
	repErrInvalid  = repFlagError | 3
	repErrTooBig   = repFlagError | 9
	repErrUnknown  = repFlagError | 6
	infoExport     = 0
	infoName       = 1
	infoBlockSize  = 3
	tflagHasFlags  = 1 << 0
	tflagReadOnly  = 1 << 1
	tflagSendFlush = 1 << 2
	tflagSendDF    = 1 << 7
	tflagMultiConn = 1 << 8
	tflagCache     = 1 << 10

	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdCache       = 5
	cmdWriteZeroes = 6

	chunkDone       = 1 << 0
	chunkNone       = 0
	chunkOffsetData = 1
	chunkError      = 1<<15 | 1

	errPerm     = 1
	errIO       = 5
	errInval    = 22
	errNotSup   = 95
	errOverflow = 75
)

// Limits.
const (
	// MaxPayload bounds a read's length and a write's payload (32 MiB, as
	// the NBD reference server).
	MaxPayload = 32 << 20
	// maxOption bounds an option's data; export names are at most 4096
	// bytes by the protocol.
	maxOption = 64 << 10
	// HandshakeTimeout bounds the time from accept to transmission.
	HandshakeTimeout = 30 * time.Second
)

// Export is one read-only export.
type Export interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// Exports finds exports by name ("" is the default export).
type Exports interface {
	Open(ctx context.Context, name string) (Export, error)
	// List returns the export names NBD_OPT_LIST shows.
	List(ctx context.Context) ([]string, error)
}

// ErrUnknownExport is what Open returns (wrapped) for a name it does not
// serve.
var ErrUnknownExport = errors.New("nbd: unknown export")

// Session describes a finished connection (for logs and metrics).
type Session struct {
	Client   net.Addr
	Export   string
	Reads    int64
	Bytes    int64
	Duration time.Duration
	Err      error // nil for a clean disconnect
}

// Server serves NBD connections.
type Server struct {
	Exports Exports
	Logger  *slog.Logger
	// MaxConns bounds concurrent connections (default 256).
	MaxConns int
	// IdleTimeout closes a connection without requests for this long
	// (default 10 minutes).
	IdleTimeout time.Duration
	// Done, when set, is called after each connection.
	Done func(Session)
}

// Serve accepts connections on l until ctx ends (it then closes l and
// every connection, and waits for them).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if s.Exports == nil {
		return errors.New("nbd: no Exports")
	}
	maxC := s.MaxConns
	if maxC <= 0 {
		maxC = 256
	}
	sem := make(chan struct{}, maxC)
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("nbd: accept: %w", err)
		}
		select {
		case sem <- struct{}{}:
		default:
			s.logger().Warn("too many connections", "proto", "nbd", "client", c.RemoteAddr().String())
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			stopConn := context.AfterFunc(ctx, func() { c.Close() })
			defer stopConn()
			s.ServeConn(ctx, c)
		}()
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// ServeConn serves one connection and closes it.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	start := time.Now()
	cs := &conn{c: c, srv: s, ctx: ctx}
	err := cs.run()
	c.Close()
	sess := Session{Client: c.RemoteAddr(), Export: cs.name, Reads: cs.reads, Bytes: cs.bytes, Duration: time.Since(start), Err: err}
	log := s.logger().With("proto", "nbd", "client", c.RemoteAddr().String(), "export", cs.name,
		"reads", cs.reads, "bytes", cs.bytes, "duration", sess.Duration)
	if err != nil {
		log.Warn("connection failed", "err", err)
	} else {
		log.Info("disconnected")
	}
	if s.Done != nil {
		s.Done(sess)
	}
}

type conn struct {
	c          net.Conn
	srv        *Server
	ctx        context.Context
	noZeroes   bool
	structured bool
	exp        Export
	name       string
	reads      int64
	bytes      int64
	hdr        [32]byte
}

// errDisconnect ends a connection cleanly.
var errDisconnect = errors.New("nbd: disconnect")

func (cs *conn) run() error {
	defer func() {
		if cs.exp != nil {
			cs.exp.Close()
		}
	}()
	if err := cs.c.SetDeadline(time.Now().Add(HandshakeTimeout)); err != nil {
		return err
	}
	if err := cs.handshake(); err != nil {
		if errors.Is(err, errDisconnect) {
			return nil
		}
		return err
	}
	// A session lasts as long as the client's boot: say when it starts.
	cs.srv.logger().Info("export opened", "proto", "nbd", "client", cs.c.RemoteAddr().String(), "export", cs.name, "size", cs.exp.Size())
	err := cs.transmit()
	if errors.Is(err, errDisconnect) {
		return nil
	}
	return err
}

func (cs *conn) handshake() error {
	var b [18]byte
	binary.BigEndian.PutUint64(b[0:], magicNBD)
	binary.BigEndian.PutUint64(b[8:], magicOpt)
	binary.BigEndian.PutUint16(b[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := cs.c.Write(b[:]); err != nil {
		return fmt.Errorf("nbd: greeting: %w", err)
	}
	var cf [4]byte
	if _, err := io.ReadFull(cs.c, cf[:]); err != nil {
		return fmt.Errorf("nbd: client flags: %w", err)
	}
	flags := binary.BigEndian.Uint32(cf[:])
	if flags&^uint32(flagFixedNewstyle|flagNoZeroes) != 0 {
		return fmt.Errorf("nbd: unknown client flags %#x", flags)
	}
	cs.noZeroes = flags&flagNoZeroes != 0
	for {
		var h [16]byte
		if _, err := io.ReadFull(cs.c, h[:]); err != nil {
			return fmt.Errorf("nbd: option header: %w", err)
		}
		if binary.BigEndian.Uint64(h[:]) != magicOpt {
			return fmt.Errorf("nbd: bad option magic %#x", binary.BigEndian.Uint64(h[:]))
		}
		opt := binary.BigEndian.Uint32(h[8:])
		n := binary.BigEndian.Uint32(h[12:])
		if n > maxOption {
			return fmt.Errorf("nbd: option %d of %d bytes is too long", opt, n)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(cs.c, data); err != nil {
			return fmt.Errorf("nbd: option data: %w", err)
		}
		done, err := cs.option(opt, data)
		if err != nil || done {
			return err
		}
	}
}

func (cs *conn) reply(opt, typ uint32, data []byte) error {
	b := make([]byte, 20, 20+len(data))
	binary.BigEndian.PutUint64(b[0:], magicOptReply)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], typ)
	binary.BigEndian.PutUint32(b[16:], uint32(len(data)))
	_, err := cs.c.Write(append(b, data...))
	return err
}

func (cs *conn) replyErr(opt, typ uint32, msg string) error {
	return cs.reply(opt, typ, []byte(msg))
}

func (cs *conn) tflags() uint16 {
	f := uint16(tflagHasFlags | tflagReadOnly | tflagSendFlush | tflagMultiConn | tflagCache)
	if cs.structured {
		f |= tflagSendDF
	}
	return f
}

// option handles one option; done means transmission starts (or the
// client aborted: then the error is errDisconnect).
func (cs *conn) option(opt uint32, data []byte) (done bool, err error) {
	switch opt {
	case optExportName:
		exp, err := cs.srv.Exports.Open(cs.ctx, string(data))
		if err != nil {
			return true, fmt.Errorf("nbd: export %q: %w", data, err) // the protocol can only hang up
		}
		cs.exp, cs.name = exp, string(data)
		b := make([]byte, 10, 10+124)
		binary.BigEndian.PutUint64(b, uint64(exp.Size()))
		binary.BigEndian.PutUint16(b[8:], cs.tflags())
		if !cs.noZeroes {
			b = append(b, make([]byte, 124)...)
		}
		_, err = cs.c.Write(b)
		return true, err
	case optAbort:
		cs.reply(opt, repAck, nil) //nolint:errcheck // the client may already be gone
		return true, errDisconnect
	case optList:
		if len(data) != 0 {
			return false, cs.replyErr(opt, repErrInvalid, "NBD_OPT_LIST takes no data")
		}
		names, err := cs.srv.Exports.List(cs.ctx)
		if err != nil {
			return false, cs.replyErr(opt, repErrPolicy, "listing exports failed")
		}
		for _, n := range names {
			d := binary.BigEndian.AppendUint32(nil, uint32(len(n)))
			if err := cs.reply(opt, repServer, append(d, n...)); err != nil {
				return false, err
			}
		}
		return false, cs.reply(opt, repAck, nil)
	case optStructuredReply:
		if len(data) != 0 {
			return false, cs.replyErr(opt, repErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data")
		}
		cs.structured = true
		return false, cs.reply(opt, repAck, nil)
	case optInfo, optGo:
		name, infos, err := parseInfoRequest(data)
		if err != nil {
			return false, cs.replyErr(opt, repErrInvalid, err.Error())
		}
		exp, err := cs.srv.Exports.Open(cs.ctx, name)
		if err != nil {
			if errors.Is(err, ErrUnknownExport) {
				return false, cs.replyErr(opt, repErrUnknown, "no export named "+fmt.Sprintf("%q", name))
			}
			return false, cs.replyErr(opt, repErrPolicy, "export unavailable")
		}
		info := binary.BigEndian.AppendUint16(nil, infoExport)
		info = binary.BigEndian.AppendUint64(info, uint64(exp.Size()))
		info = binary.BigEndian.AppendUint16(info, cs.tflags())
		if err := cs.reply(opt, repInfo, info); err != nil {
			exp.Close()
			return false, err
		}
		for _, i := range infos {
			switch i {
			case infoBlockSize:
				d := binary.BigEndian.AppendUint16(nil, infoBlockSize)
				d = binary.BigEndian.AppendUint32(d, 1)
				d = binary.BigEndian.AppendUint32(d, 4096)
				d = binary.BigEndian.AppendUint32(d, MaxPayload)
				if err := cs.reply(opt, repInfo, d); err != nil {
					exp.Close()
					return false, err
				}
			case infoName:
				d := binary.BigEndian.AppendUint16(nil, infoName)
				if err := cs.reply(opt, repInfo, append(d, name...)); err != nil {
					exp.Close()
					return false, err
				}
			}
		}
		if err := cs.reply(opt, repAck, nil); err != nil {
			exp.Close()
			return false, err
		}
		if opt == optInfo {
			exp.Close()
			return false, nil
		}
		cs.exp, cs.name = exp, name
		return true, nil
	case optStartTLS:
		return false, cs.replyErr(opt, repErrPolicy, "TLS is not offered")
	default:
		return false, cs.replyErr(opt, repErrUnsup, fmt.Sprintf("option %d is not supported", opt))
	}
}

// parseInfoRequest parses NBD_OPT_INFO/GO data: name length, name, number
// of information requests, requests.
func parseInfoRequest(d []byte) (name string, infos []uint16, err error) {
	if len(d) < 6 {
		return "", nil, errors.New("option data too short")
	}
	n := binary.BigEndian.Uint32(d)
	if n > 4096 || uint64(len(d)) < 4+uint64(n)+2 {
		return "", nil, errors.New("bad export name length")
	}
	name = string(d[4 : 4+n])
	rest := d[4+n:]
	k := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*k {
		return "", nil, errors.New("bad number of information requests")
	}
	for i := 0; i < k; i++ {
		infos = append(infos, binary.BigEndian.Uint16(rest[2*i:]))
	}
	return name, infos, nil
}

// Request is one transmission-phase request header.
type Request struct {
	Flags  uint16
	Type   uint16
	Cookie uint64
	Offset uint64
	Length uint32
}

// ParseRequest parses a 28-byte request header.
func ParseRequest(b []byte) (Request, error) {
	if len(b) < 28 {
		return Request{}, fmt.Errorf("nbd: request header of %d bytes", len(b))
	}
	if m := binary.BigEndian.Uint32(b); m != magicRequest {
		return Request{}, fmt.Errorf("nbd: bad request magic %#x", m)
	}
	return Request{
		Flags:  binary.BigEndian.Uint16(b[4:]),
		Type:   binary.BigEndian.Uint16(b[6:]),
		Cookie: binary.BigEndian.Uint64(b[8:]),
		Offset: binary.BigEndian.Uint64(b[16:]),
		Length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

func (cs *conn) transmit() error {
	idle := cs.srv.IdleTimeout
	if idle <= 0 {
		idle = 10 * time.Minute
	}
	var buf []byte
	for {
		if err := cs.c.SetDeadline(time.Now().Add(idle)); err != nil {
			return err
		}
		if _, err := io.ReadFull(cs.c, cs.hdr[:28]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil // hung up between requests
			}
			return fmt.Errorf("nbd: request: %w", err)
		}
		r, err := ParseRequest(cs.hdr[:28])
		if err != nil {
			return err
		}
		switch r.Type {
		case cmdDisc:
			return errDisconnect
		case cmdRead:
			size := uint64(cs.exp.Size())
			if r.Length > MaxPayload {
				if err := cs.fail(r, errOverflow, "read too long"); err != nil {
					return err
				}
				continue
			}
			if r.Offset > size || uint64(r.Length) > size-r.Offset {
				if err := cs.fail(r, errInval, "read past the end of the export"); err != nil {
					return err
				}
				continue
			}
			if cap(buf) < int(r.Length) {
				buf = make([]byte, r.Length)
			}
			b := buf[:r.Length]
			n, err := cs.exp.ReadAt(b, int64(r.Offset))
			if n < len(b) {
				cs.srv.logger().Warn("read failed", "proto", "nbd", "export", cs.name, "offset", r.Offset, "err", err)
				if err := cs.fail(r, errIO, "read failed"); err != nil {
					return err
				}
				continue
			}
			if err := cs.sendData(r, b); err != nil {
				return err
			}
			cs.reads++
			cs.bytes += int64(len(b))
		case cmdWrite:
			if r.Length > MaxPayload {
				return fmt.Errorf("nbd: write payload of %d bytes", r.Length)
			}
			if _, err := io.CopyN(io.Discard, cs.c, int64(r.Length)); err != nil {
				return fmt.Errorf("nbd: write payload: %w", err)
			}
			if err := cs.fail(r, errPerm, "the export is read-only"); err != nil {
				return err
			}
		case cmdTrim, cmdWriteZeroes:
			if err := cs.fail(r, errPerm, "the export is read-only"); err != nil {
				return err
			}
		case cmdFlush, cmdCache:
			if err := cs.ok(r); err != nil {
				return err
			}
		default:
			if err := cs.fail(r, errInval, fmt.Sprintf("command %d is not supported", r.Type)); err != nil {
				return err
			}
		}
	}
}

func (cs *conn) simple(r Request, errno uint32, data []byte) error {
	h := cs.hdr[:16]
	binary.BigEndian.PutUint32(h, magicSimple)
	binary.BigEndian.PutUint32(h[4:], errno)
	binary.BigEndian.PutUint64(h[8:], r.Cookie)
	if _, err := cs.c.Write(h); err != nil {
		return err
	}
	if len(data) > 0 {
		_, err := cs.c.Write(data)
		return err
	}
	return nil
}

func (cs *conn) chunk(r Request, flags, typ uint16, payload ...[]byte) error {
	n := 0
	for _, p := range payload {
		n += len(p)
	}
	h := cs.hdr[:20]
	binary.BigEndian.PutUint32(h, magicStructured)
	binary.BigEndian.PutUint16(h[4:], flags)
	binary.BigEndian.PutUint16(h[6:], typ)
	binary.BigEndian.PutUint64(h[8:], r.Cookie)
	binary.BigEndian.PutUint32(h[16:], uint32(n))
	bufs := net.Buffers{h}
	for _, p := range payload {
		bufs = append(bufs, p)
	}
	_, err := bufs.WriteTo(cs.c)
	return err
}

func (cs *conn) ok(r Request) error {
	if cs.structured {
		return cs.chunk(r, chunkDone, chunkNone)
	}
	return cs.simple(r, 0, nil)
}

func (cs *conn) sendData(r Request, data []byte) error {
	if !cs.structured {
		return cs.simple(r, 0, data)
	}
	off := binary.BigEndian.AppendUint64(nil, r.Offset)
	return cs.chunk(r, chunkDone, chunkOffsetData, off, data)
}

func (cs *conn) fail(r Request, errno uint32, msg string) error {
	if !cs.structured {
		return cs.simple(r, errno, nil)
	}
	p := binary.BigEndian.AppendUint32(nil, errno)
	p = binary.BigEndian.AppendUint16(p, uint16(len(msg)))
	return cs.chunk(r, chunkDone, chunkError, p, []byte(msg))
}
