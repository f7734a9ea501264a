// Package tftp is a read-only TFTP server (RFC 1350) with the options
// network boot clients use: blksize (RFC 2348), tsize and timeout
// (RFC 2349) and windowsize (RFC 7440).
//
// Each transfer runs in its own goroutine on its own UDP socket, with a
// per-packet timeout, a bounded number of retransmissions and one block
// buffer: a lost window is read again from the file, so memory per
// transfer is one block whatever the window. The number of concurrent
// transfers is bounded; a client past the bound gets an error packet.
// Write requests are refused. Files come from an Opener, which decides
// what a name means (the serve package maps names into its roots and never
// outside them). netascii is served as octet (boot files are binary).
// Blocks numbers roll over after 65535, as iPXE, pxelinux and Linux's
// tftp clients expect, so files of any size are served.
package tftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"sync"
	"time"
)

// File is an open file the server reads blocks from.
type File interface {
	io.ReaderAt
	io.Closer
}

// Opener opens the file a client asks for. Errors wrapping fs.ErrNotExist
// become "file not found"; others "access violation" (with the error's
// text).
type Opener interface {
	OpenTFTP(ctx context.Context, client net.Addr, name string) (f File, size int64, err error)
}

// OpenerFunc adapts a function to Opener.
type OpenerFunc func(ctx context.Context, client net.Addr, name string) (File, int64, error)

// OpenTFTP calls f.
func (f OpenerFunc) OpenTFTP(ctx context.Context, client net.Addr, name string) (File, int64, error) {
	return f(ctx, client, name)
}

// Transfer describes a finished transfer (for logs and metrics).
type Transfer struct {
	Client    net.Addr
	Filename  string
	Bytes     int64 // acknowledged by the client
	BlockSize int
	Window    int
	Duration  time.Duration
	Err       error // nil when the whole file was acknowledged
}

// Defaults.
const (
	DefaultMaxTransfers = 256
	DefaultTimeout      = time.Second
	DefaultRetries      = 6
)

// Server serves read requests. The zero value is not usable: set Opener.
type Server struct {
	Opener Opener
	Logger *slog.Logger // default: discard
	// MaxTransfers bounds concurrent transfers (default DefaultMaxTransfers).
	MaxTransfers int
	// Timeout is the retransmission timeout unless a client asks for its
	// own (default DefaultTimeout); Retries bounds retransmissions of one
	// window (default DefaultRetries).
	Timeout time.Duration
	Retries int
	// MaxBlockSize bounds blksize (default MaxBlockSize).
	MaxBlockSize int
	// ListenPacket opens a transfer's socket; default net.ListenPacket
	// with "udp" and the request socket's IP and port 0.
	ListenPacket func(network, address string) (net.PacketConn, error)
	// Done, when set, is called after each transfer.
	Done func(Transfer)
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Serve answers requests arriving on conn until ctx ends (then it closes
// conn and waits for running transfers) or conn fails.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	if s.Opener == nil {
		return errors.New("tftp: no Opener")
	}
	maxT := s.MaxTransfers
	if maxT <= 0 {
		maxT = DefaultMaxTransfers
	}
	sem := make(chan struct{}, maxT)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		active = map[string]bool{} // client address → transfer running
	)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer wg.Wait()

	buf := make([]byte, maxRequest+1)
	for {
		n, addr, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("tftp: reading requests: %w", err)
		}
		log := s.logger().With("proto", "tftp", "client", addr.String())
		req, err := ParseRequest(buf[:n])
		if err != nil {
			log.Warn("bad request", "err", err)
			conn.WriteTo(appendError(nil, errIllegalOp, "malformed request"), addr) //nolint:errcheck // best effort
			continue
		}
		if req.Write {
			log.Warn("write refused", "file", req.Filename)
			conn.WriteTo(appendError(nil, errAccess, "read-only server"), addr) //nolint:errcheck // best effort
			continue
		}
		key := addr.String()
		mu.Lock()
		dup := active[key]
		mu.Unlock()
		if dup {
			continue // a retransmitted request: its transfer answers it
		}
		select {
		case sem <- struct{}{}:
		default:
			log.Warn("too many transfers", "file", req.Filename, "max", maxT)
			conn.WriteTo(appendError(nil, errUndefined, "server busy, try again"), addr) //nolint:errcheck // best effort
			continue
		}
		mu.Lock()
		active[key] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer func() {
				mu.Lock()
				delete(active, key)
				mu.Unlock()
				<-sem
				wg.Done()
			}()
			s.transfer(ctx, conn.LocalAddr(), addr, req)
		}()
	}
}

func (s *Server) transfer(ctx context.Context, local, client net.Addr, req *Request) {
	start := time.Now()
	t := Transfer{Client: client, Filename: req.Filename, BlockSize: DefaultBlockSize, Window: 1}
	log := s.logger().With("proto", "tftp", "client", client.String(), "file", req.Filename)
	defer func() {
		t.Duration = time.Since(start)
		switch {
		case t.Err != nil && t.Bytes == 0 && errors.Is(t.Err, ErrClientGaveUp):
			// UEFI firmware asks for tsize, then ends the transfer.
			log.Info("client ended the transfer after the options", "duration", t.Duration, "reason", t.Err)
		case t.Err != nil:
			log.Warn("transfer failed", "bytes", t.Bytes, "blksize", t.BlockSize, "window", t.Window, "duration", t.Duration, "err", t.Err)
		default:
			log.Info("sent", "bytes", t.Bytes, "blksize", t.BlockSize, "window", t.Window, "duration", t.Duration)
		}
		if s.Done != nil {
			s.Done(t)
		}
	}()

	listen := s.ListenPacket
	if listen == nil {
		listen = net.ListenPacket
	}
	host := ""
	if ua, ok := local.(*net.UDPAddr); ok && !ua.IP.IsUnspecified() {
		host = ua.IP.String()
	}
	conn, err := listen("udp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Err = fmt.Errorf("tftp: transfer socket: %w", err)
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) }) //nolint:errcheck // wakes the reader
	defer stop()

	f, size, err := s.Opener.OpenTFTP(ctx, client, req.Filename)
	if err != nil {
		code := uint16(errAccess)
		if errors.Is(err, fs.ErrNotExist) {
			code = errNotFound
		}
		conn.WriteTo(appendError(nil, code, shortErr(err)), client) //nolint:errcheck // best effort
		t.Err = err
		return
	}
	defer f.Close()

	neg := Negotiate(req.Options, size, s.MaxBlockSize)
	t.BlockSize, t.Window = neg.BlockSize, neg.WindowSize
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if neg.TimeoutSec > 0 {
		timeout = time.Duration(neg.TimeoutSec) * time.Second
	}
	retries := s.Retries
	if retries <= 0 {
		retries = DefaultRetries
	}
	x := &sender{conn: conn, client: client, f: f, size: size, blk: neg.BlockSize, win: neg.WindowSize,
		timeout: timeout, retries: retries, buf: make([]byte, 4+neg.BlockSize), log: log}
	if len(neg.Ack) > 0 {
		if err := x.oack(neg.Ack); err != nil {
			t.Err = err
			return
		}
	}
	t.Bytes, t.Err = x.run()
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// sender sends one file to one client.
type sender struct {
	conn     net.PacketConn
	client   net.Addr
	f        io.ReaderAt
	size     int64
	blk      int
	win      int
	timeout  time.Duration
	retries  int
	buf      []byte
	cache    []byte // file bytes from cacheOff
	cacheOff int64
	in       [1500]byte
	log      *slog.Logger
}

// ErrClientGaveUp reports an ERROR packet from the client.
var ErrClientGaveUp = errors.New("tftp: client sent an error")

// ErrTimeout reports a client that stopped acknowledging.
var ErrTimeout = errors.New("tftp: client stopped acknowledging")

// recvAck waits until the deadline for an ACK from the client; it returns
// the block number or an error (a timeout is ErrTimeout).
func (x *sender) recvAck(deadline time.Time) (uint16, error) {
	if err := x.conn.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	for {
		n, from, err := x.conn.ReadFrom(x.in[:])
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return 0, ErrTimeout
			}
			return 0, err
		}
		if !sameAddr(from, x.client) {
			x.conn.WriteTo(appendError(nil, errUnknownTID, "unknown transfer id"), from) //nolint:errcheck // best effort
			continue
		}
		block, clientErr, err := parseAck(x.in[:n])
		if err != nil {
			x.log.Debug("ignoring packet", "err", err)
			continue
		}
		if clientErr != "" {
			return 0, fmt.Errorf("%w: %s", ErrClientGaveUp, clientErr)
		}
		return block, nil
	}
}

func sameAddr(a, b net.Addr) bool {
	ua, ok1 := a.(*net.UDPAddr)
	ub, ok2 := b.(*net.UDPAddr)
	if ok1 && ok2 {
		return ua.Port == ub.Port && ua.IP.Equal(ub.IP)
	}
	return a.String() == b.String()
}

func (x *sender) oack(opts []Option) error {
	pkt := appendOACK(nil, opts)
	for try := 0; try <= x.retries; try++ {
		if _, err := x.conn.WriteTo(pkt, x.client); err != nil {
			return fmt.Errorf("tftp: sending OACK: %w", err)
		}
		deadline := time.Now().Add(x.timeout)
		for {
			block, err := x.recvAck(deadline)
			if errors.Is(err, ErrTimeout) {
				break
			}
			if err != nil {
				return err
			}
			if block == 0 {
				return nil
			}
		}
	}
	return fmt.Errorf("%w (after the OACK)", ErrTimeout)
}

// run sends the file; it returns the bytes the client acknowledged.
func (x *sender) run() (int64, error) {
	last := uint64(x.size/int64(x.blk)) + 1 // the last block is short, maybe empty
	base := uint64(1)                       // first unacknowledged block
	tries := 0
	for {
		end := min(base+uint64(x.win)-1, last)
		for b := base; b <= end; b++ {
			if err := x.send(b); err != nil {
				return acked(base, x.blk, x.size), err
			}
		}
		deadline := time.Now().Add(x.timeout)
	wait:
		for {
			a16, err := x.recvAck(deadline)
			if errors.Is(err, ErrTimeout) {
				tries++
				if tries > x.retries {
					return acked(base, x.blk, x.size), err
				}
				break wait
			}
			if err != nil {
				return acked(base, x.blk, x.size), err
			}
			// The 16-bit number names a block in [base-1, end].
			k := base - 1 + uint64(a16-uint16(base-1))
			if k > end {
				continue // stale
			}
			if k == base-1 {
				// A duplicate, or a client saying the window's first block
				// was lost. Resending on these multiplies the traffic (the
				// sorcerer's apprentice, and with windows every later
				// window twice): the timeout resends instead.
				continue
			}
			base, tries = k+1, 0
			if k == last {
				return x.size, nil
			}
			break wait
		}
	}
}

func acked(base uint64, blk int, size int64) int64 {
	return min(int64(base-1)*int64(blk), size)
}

// readAhead is how much of the file a transfer reads at once (blocks are
// cut from it): fewer system calls for small blocks, bounded memory.
const readAhead = 64 << 10

// send sends block b (1-based, 64-bit).
func (x *sender) send(b uint64) error {
	off := int64(b-1) * int64(x.blk)
	n := 0
	if off < x.size {
		n = int(min(int64(x.blk), x.size-off))
		if off < x.cacheOff || off+int64(n) > x.cacheOff+int64(len(x.cache)) {
			if err := x.fill(off, n); err != nil {
				return err
			}
		}
		copy(x.buf[4:4+n], x.cache[off-x.cacheOff:])
	}
	binary.BigEndian.PutUint16(x.buf, opDATA)
	binary.BigEndian.PutUint16(x.buf[2:], uint16(b))
	if _, err := x.conn.WriteTo(x.buf[:4+n], x.client); err != nil {
		return fmt.Errorf("tftp: sending block %d: %w", b, err)
	}
	return nil
}

// fill reads the file from off into the cache: at least need bytes, as
// many as readAhead (or one block) allows.
func (x *sender) fill(off int64, need int) error {
	size := max(readAhead, x.blk)
	if cap(x.cache) < size {
		x.cache = make([]byte, size)
	}
	want := int(min(int64(size), x.size-off))
	c := x.cache[:want]
	got, err := x.f.ReadAt(c, off)
	if got < need {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		x.cache = x.cache[:0]
		return fmt.Errorf("tftp: reading at %d: %w", off, err)
	}
	x.cache, x.cacheOff = c[:got], off
	return nil
}
