package nbd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/testutil"
)

// memExports serves byte slices by name; "" is "disk".
type memExports map[string][]byte

type memExport struct{ *bytes.Reader }

func (memExport) Close() error { return nil }

func (m memExports) Open(_ context.Context, name string) (Export, error) {
	if name == "" {
		name = "disk"
	}
	b, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownExport, name)
	}
	return memExport{bytes.NewReader(b)}, nil
}

func (m memExports) List(context.Context) ([]string, error) { return []string{"disk"}, nil }

func start(t testing.TB, exp Exports) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Exports: exp}).Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

func random(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// client is a minimal NBD client for protocol tests.
type client struct {
	t *testing.T
	c net.Conn
}

func dial(t *testing.T, addr string) *client {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cl := &client{t, c}
	g := cl.read(18)
	if binary.BigEndian.Uint64(g) != magicNBD || binary.BigEndian.Uint64(g[8:]) != magicOpt {
		t.Fatalf("greeting %x", g)
	}
	cl.write(binary.BigEndian.AppendUint32(nil, flagFixedNewstyle|flagNoZeroes))
	return cl
}

func (cl *client) read(n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(cl.c, b); err != nil {
		cl.t.Fatalf("read: %v", err)
	}
	return b
}

func (cl *client) write(b []byte) {
	if _, err := cl.c.Write(b); err != nil {
		cl.t.Fatalf("write: %v", err)
	}
}

func (cl *client) option(opt uint32, data []byte) {
	b := binary.BigEndian.AppendUint64(nil, magicOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	cl.write(append(b, data...))
}

// reply reads one option reply: its type and data.
func (cl *client) reply(opt uint32) (uint32, []byte) {
	h := cl.read(20)
	if binary.BigEndian.Uint64(h) != magicOptReply || binary.BigEndian.Uint32(h[8:]) != opt {
		cl.t.Fatalf("option reply header %x", h)
	}
	return binary.BigEndian.Uint32(h[12:]), cl.read(int(binary.BigEndian.Uint32(h[16:])))
}

func infoData(name string, infos ...uint16) []byte {
	d := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	d = append(d, name...)
	d = binary.BigEndian.AppendUint16(d, uint16(len(infos)))
	for _, i := range infos {
		d = binary.BigEndian.AppendUint16(d, i)
	}
	return d
}

func (cl *client) request(typ uint16, cookie, off uint64, length uint32, payload []byte) {
	b := binary.BigEndian.AppendUint32(nil, magicRequest)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	cl.write(append(b, payload...))
}

// chunk reads one structured reply chunk.
func (cl *client) chunk(cookie uint64) (flags, typ uint16, payload []byte) {
	h := cl.read(20)
	if binary.BigEndian.Uint32(h) != magicStructured || binary.BigEndian.Uint64(h[8:]) != cookie {
		cl.t.Fatalf("chunk header %x", h)
	}
	return binary.BigEndian.Uint16(h[4:]), binary.BigEndian.Uint16(h[6:]), cl.read(int(binary.BigEndian.Uint32(h[16:])))
}

func TestProtocol(t *testing.T) {
	disk := random(t, 1<<20+123)
	addr := start(t, memExports{"disk": disk})
	cl := dial(t, addr)

	cl.option(optList, nil)
	typ, d := cl.reply(optList)
	if typ != repServer || string(d[4:]) != "disk" {
		t.Fatalf("list: %d %q", typ, d)
	}
	if typ, _ := cl.reply(optList); typ != repAck {
		t.Fatalf("list end: %d", typ)
	}
	cl.option(optInfo, infoData("nope"))
	if typ, _ := cl.reply(optInfo); typ != repErrUnknown {
		t.Fatalf("info on an unknown export: %#x", typ)
	}
	cl.option(optInfo, []byte{1, 2, 3}) // malformed
	if typ, _ := cl.reply(optInfo); typ != repErrInvalid {
		t.Fatalf("malformed info: %#x", typ)
	}
	cl.option(99, []byte("x"))
	if typ, _ := cl.reply(99); typ != repErrUnsup {
		t.Fatalf("unknown option: %#x", typ)
	}
	cl.option(optStructuredReply, nil)
	if typ, _ := cl.reply(optStructuredReply); typ != repAck {
		t.Fatalf("structured reply: %#x", typ)
	}
	cl.option(optGo, infoData("", infoBlockSize))
	var size uint64
	var tflags uint16
	for {
		typ, d := cl.reply(optGo)
		if typ == repAck {
			break
		}
		if typ != repInfo {
			t.Fatalf("go: reply %#x %q", typ, d)
		}
		if binary.BigEndian.Uint16(d) == infoExport {
			size, tflags = binary.BigEndian.Uint64(d[2:]), binary.BigEndian.Uint16(d[10:])
		}
	}
	if size != uint64(len(disk)) || tflags&tflagReadOnly == 0 {
		t.Fatalf("export size %d flags %#x", size, tflags)
	}

	// Reads, at the end too.
	for i, r := range [][2]uint64{{0, 4096}, {1000, 70000}, {uint64(len(disk)) - 5, 5}} {
		cl.request(cmdRead, uint64(i), r[0], uint32(r[1]), nil)
		flags, typ, p := cl.chunk(uint64(i))
		if flags&chunkDone == 0 || typ != chunkOffsetData || binary.BigEndian.Uint64(p) != r[0] {
			t.Fatalf("read %v: chunk flags %d type %d", r, flags, typ)
		}
		if !bytes.Equal(p[8:], disk[r[0]:r[0]+r[1]]) {
			t.Fatalf("read %v: wrong data", r)
		}
	}
	// Errors: past the end, too long, a write (its payload is skipped),
	// trim; then a read still works.
	for _, c := range []struct {
		typ     uint16
		off     uint64
		n       uint32
		payload []byte
		errno   uint32
	}{
		{cmdRead, uint64(len(disk)) - 1, 2, nil, errInval},
		{cmdRead, 0, MaxPayload + 1, nil, errOverflow},
		{cmdWrite, 0, 3, []byte("abc"), errPerm},
		{cmdTrim, 0, 4096, nil, errPerm},
		{77, 0, 0, nil, errInval},
	} {
		cl.request(c.typ, 7, c.off, c.n, c.payload)
		flags, typ, p := cl.chunk(7)
		if flags&chunkDone == 0 || typ != chunkError || binary.BigEndian.Uint32(p) != c.errno {
			t.Fatalf("command %d: flags %d type %#x payload %q, want error %d", c.typ, flags, typ, p, c.errno)
		}
		if c.typ == cmdWrite && !strings.Contains(string(p[6:]), "read-only") {
			t.Errorf("write refused with %q", p[6:])
		}
	}
	cl.request(cmdRead, 9, 0, 10, nil)
	if _, _, p := cl.chunk(9); !bytes.Equal(p[8:], disk[:10]) {
		t.Fatal("read after errors: wrong data")
	}
	cl.request(cmdDisc, 10, 0, 0, nil)
	if n, err := cl.c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after disconnect: %d bytes, %v", n, err)
	}
}

// TestOldExportName covers NBD_OPT_EXPORT_NAME and simple replies.
func TestOldExportName(t *testing.T) {
	disk := random(t, 10000)
	addr := start(t, memExports{"disk": disk})
	cl := dial(t, addr)
	cl.option(optExportName, []byte("disk"))
	h := cl.read(10)
	if binary.BigEndian.Uint64(h) != uint64(len(disk)) {
		t.Fatalf("size %d", binary.BigEndian.Uint64(h))
	}
	cl.request(cmdRead, 1, 100, 200, nil)
	r := cl.read(16)
	if binary.BigEndian.Uint32(r) != magicSimple || binary.BigEndian.Uint32(r[4:]) != 0 {
		t.Fatalf("reply %x", r)
	}
	if !bytes.Equal(cl.read(200), disk[100:300]) {
		t.Fatal("wrong data")
	}
	cl.request(cmdWrite, 2, 0, 4, []byte("abcd"))
	r = cl.read(16)
	if binary.BigEndian.Uint32(r[4:]) != errPerm {
		t.Fatalf("write: errno %d", binary.BigEndian.Uint32(r[4:]))
	}
}

// TestBadClientsDoNotStopOthers: garbage, a huge option and a hang-up
// mid-handshake end those connections only.
func TestBadClientsDoNotStopOthers(t *testing.T) {
	addr := start(t, memExports{"disk": random(t, 4096)})
	for _, junk := range [][]byte{
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		append(binary.BigEndian.AppendUint32(nil, 3), "IHAVEOPX\x00\x00\x00\x01\x00\x00\x00\x00"...),
		append(append(binary.BigEndian.AppendUint32(nil, 3), binary.BigEndian.AppendUint64(nil, magicOpt)...), 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff),
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(junk)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(io.Discard, c)
		c.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server did not hang up on %q: %v", junk, err)
		}
	}
	cl := dial(t, addr)
	cl.option(optExportName, []byte(""))
	cl.read(10)
}

// TestQemuImg reads an export with qemu-img (QEMU's NBD client) and checks
// that qemu-io cannot write to it.
func TestQemuImg(t *testing.T) {
	qimg := testutil.Tool(t, "qemu-img", "qemu-utils")
	disk := random(t, 3<<20+512)
	addr := start(t, memExports{"disk": disk, "nix-store.squashfs": disk[:1<<20]})
	out := filepath.Join(t.TempDir(), "copy.raw")
	url := "nbd://" + addr + "/disk"
	if b, err := exec.Command(qimg, "convert", "-f", "raw", "-O", "raw", url, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, disk) {
		t.Fatalf("qemu-img read %d bytes, want %d", len(got), len(disk))
	}
	b, err := exec.Command(qimg, "info", "--output=json", "nbd://"+addr+"/nix-store.squashfs").CombinedOutput()
	if err != nil || !strings.Contains(string(b), `"virtual-size": 1048576`) {
		t.Fatalf("qemu-img info: %v\n%s", err, b)
	}
	if b, err := exec.Command(qimg, "info", "nbd://"+addr+"/missing").CombinedOutput(); err == nil {
		t.Fatalf("qemu-img opened a missing export:\n%s", b)
	}
	qio := testutil.Tool(t, "qemu-io", "qemu-utils")
	b, err = exec.Command(qio, "-f", "raw", "-c", "write -P 1 0 512", url).CombinedOutput()
	if err == nil && !strings.Contains(strings.ToLower(string(b)), "read-only") && !strings.Contains(string(b), "ermission") {
		t.Fatalf("qemu-io wrote to a read-only export:\n%s", b)
	}
	t.Logf("qemu-io write: %s", strings.TrimSpace(string(b)))
	if b, err := exec.Command(qimg, "convert", "-f", "raw", "-O", "raw", url, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img after the refused write: %v\n%s", err, b)
	}
	got, err = os.ReadFile(out)
	if err != nil || !bytes.Equal(got, disk) {
		t.Fatalf("export changed after a refused write (%v)", err)
	}
}

// pipeConn feeds a fixed client stream to ServeConn and drops replies.
type pipeConn struct {
	net.Conn
	r io.Reader
}

func (p *pipeConn) Read(b []byte) (int, error)         { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error)        { return len(b), nil }
func (p *pipeConn) Close() error                       { return nil }
func (p *pipeConn) SetDeadline(time.Time) error        { return nil }
func (p *pipeConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (p *pipeConn) SetReadDeadline(t time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(t time.Time) error { return nil }

func FuzzServeConn(f *testing.F) {
	hello := binary.BigEndian.AppendUint32(nil, flagFixedNewstyle|flagNoZeroes)
	opt := func(o uint32, d []byte) []byte {
		b := binary.BigEndian.AppendUint64(nil, magicOpt)
		b = binary.BigEndian.AppendUint32(b, o)
		b = binary.BigEndian.AppendUint32(b, uint32(len(d)))
		return append(b, d...)
	}
	req := func(typ uint16, off uint64, n uint32) []byte {
		b := binary.BigEndian.AppendUint32(nil, magicRequest)
		b = binary.BigEndian.AppendUint32(b, uint32(typ))
		b = binary.BigEndian.AppendUint64(b, 1)
		b = binary.BigEndian.AppendUint64(b, off)
		return binary.BigEndian.AppendUint32(b, n)
	}
	seed := append(append([]byte{}, hello...), opt(optStructuredReply, nil)...)
	seed = append(seed, opt(optGo, infoData("", 3))...)
	seed = append(seed, req(cmdRead, 0, 100)...)
	seed = append(seed, req(cmdWrite, 0, 2)...)
	seed = append(seed, 'x', 'y')
	f.Add(seed)
	f.Add(append(append([]byte{}, hello...), opt(optExportName, []byte("disk"))...))
	f.Add(append(append([]byte{}, hello...), opt(optList, nil)...))
	exp := memExports{"disk": make([]byte, 5000)}
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &Server{Exports: exp}
		s.ServeConn(context.Background(), &pipeConn{r: bytes.NewReader(in)})
	})
}

func FuzzParseRequest(f *testing.F) {
	f.Add(make([]byte, 28))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err == nil && len(b) < 28 {
			t.Fatalf("parsed %d bytes as %+v", len(b), r)
		}
		if err != nil && errors.Is(err, io.EOF) {
			t.Fatal("EOF from a byte slice")
		}
	})
}
