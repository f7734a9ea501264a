package stage0

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// nbdTestServer accepts connections on 127.0.0.1: the first drop
// connections are closed at once (a server that is starting), the others
// get a newstyle handshake answering NBD_OPT_GO with an export of size
// bytes.
func nbdTestServer(t *testing.T, drop int32, size uint64) (addr string, conns *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	conns = new(atomic.Int32)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if conns.Add(1) <= drop {
				c.Close()
				continue
			}
			go serveHandshake(c, size)
		}
	}()
	return l.Addr().String(), conns
}

func serveHandshake(c net.Conn, size uint64) {
	defer c.Close()
	b := append([]byte("NBDMAGICIHAVEOPT"), 0, 3)
	if _, err := c.Write(b); err != nil {
		return
	}
	var h [4 + 16]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return
	}
	opt := binary.BigEndian.Uint32(h[12:])
	if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(h[16:]))); err != nil {
		return
	}
	reply := func(typ uint32, data []byte) []byte {
		r := binary.BigEndian.AppendUint64(nil, 0x3e889045565a9)
		r = binary.BigEndian.AppendUint32(r, opt)
		r = binary.BigEndian.AppendUint32(r, typ)
		r = binary.BigEndian.AppendUint32(r, uint32(len(data)))
		return append(r, data...)
	}
	info := binary.BigEndian.AppendUint16(nil, 0)
	info = binary.BigEndian.AppendUint64(info, size)
	info = binary.BigEndian.AppendUint16(info, 3)
	c.Write(append(reply(3, info), reply(1, nil)...)) //nolint:errcheck // the client reports a short handshake
	time.Sleep(time.Second)                           // the client takes the socket over
}

// TestNBDConnectRetriesHandshake: a server that accepts connections and
// drops them (starting, restarting) is retried with a console line until
// the handshake succeeds; an export of the wrong size is final.
func TestNBDConnectRetriesHandshake(t *testing.T) {
	addr, conns := nbdTestServer(t, 2, 1<<33)
	var console bytes.Buffer
	url := "nbd://" + addr + "/store"
	u, err := ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	s := &Stage0{Cfg: &Config{URL: url, Size: 1 << 33}, URL: u, Console: &console, GiveUp: time.Minute}
	f, ex, err := s.nbdConnect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if ex.Size != 1<<33 || conns.Load() != 3 {
		t.Errorf("export %+v after %d connections; want 8 GiB after 3", ex, conns.Load())
	}
	if !strings.Contains(console.String(), "waiting for "+url) {
		t.Errorf("console:\n%s", console.String())
	}

	s.Cfg.Size = 1 << 20
	start := time.Now()
	if _, _, err := s.nbdConnect(context.Background()); !errors.Is(err, errWrongExport) {
		t.Errorf("wrong size: %v, want %v", err, errWrongExport)
	}
	if time.Since(start) > 10*time.Second {
		t.Error("a wrong export was retried")
	}
}
