package nbd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/qemu"
)

// fakeServer plays a scripted server side over a pipe.
type fakeServer struct {
	flags    uint16
	goReply  func(w io.Writer) // answers NBD_OPT_GO
	exportNm func(w io.Writer) // answers NBD_OPT_EXPORT_NAME
}

func reply(w io.Writer, opt, typ uint32, data []byte) {
	b := binary.BigEndian.AppendUint64(nil, magicReply)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	w.Write(append(b, data...)) //nolint:errcheck // the client side reports broken pipes
}

func infoExportReply(size uint64, flags uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, infoExport)
	b = binary.BigEndian.AppendUint64(b, size)
	return binary.BigEndian.AppendUint16(b, flags)
}

func (f fakeServer) run(c net.Conn) {
	defer c.Close()
	b := binary.BigEndian.AppendUint64(nil, magicInit)
	b = binary.BigEndian.AppendUint64(b, magicOpt)
	b = binary.BigEndian.AppendUint16(b, f.flags)
	if _, err := c.Write(b); err != nil {
		return
	}
	var cflags [4]byte
	if _, err := io.ReadFull(c, cflags[:]); err != nil {
		return
	}
	for {
		var h [16]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return
		}
		data := make([]byte, binary.BigEndian.Uint32(h[12:]))
		if _, err := io.ReadFull(c, data); err != nil {
			return
		}
		switch binary.BigEndian.Uint32(h[8:]) {
		case optGo:
			f.goReply(c)
		case optExportName:
			f.exportNm(c)
			return
		}
	}
}

func handshakeWith(t *testing.T, f fakeServer) (Export, error) {
	t.Helper()
	a, b := net.Pipe()
	go f.run(b)
	defer a.Close()
	a.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck // a pipe supports deadlines
	return Handshake(a, "store")
}

func TestHandshakeFake(t *testing.T) {
	ok := func(w io.Writer) {
		reply(w, optGo, repInfo, []byte{0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0}) // block size info: ignored
		reply(w, optGo, repInfo, infoExportReply(1<<32+4096, FlagHasFlags|FlagReadOnly))
		reply(w, optGo, repAck, nil)
	}
	ex, err := handshakeWith(t, fakeServer{flags: flagFixed | flagNoZeroes, goReply: ok})
	if err != nil || ex.Size != 1<<32+4096 || ex.Flags != FlagHasFlags|FlagReadOnly {
		t.Errorf("NBD_OPT_GO: %+v, %v", ex, err)
	}

	for _, zeroes := range []bool{false, true} {
		flags := uint16(flagFixed)
		if !zeroes {
			flags |= flagNoZeroes
		}
		ex, err = handshakeWith(t, fakeServer{
			flags:   flags,
			goReply: func(w io.Writer) { reply(w, optGo, repErrUnsup, nil) },
			exportNm: func(w io.Writer) {
				b := binary.BigEndian.AppendUint64(nil, 8192)
				b = binary.BigEndian.AppendUint16(b, FlagHasFlags)
				if zeroes {
					b = append(b, make([]byte, 124)...)
				}
				w.Write(b) //nolint:errcheck // see reply
			},
		})
		if err != nil || ex.Size != 8192 || ex.Flags != FlagHasFlags {
			t.Errorf("NBD_OPT_EXPORT_NAME fallback (zeroes %v): %+v, %v", zeroes, ex, err)
		}
	}

	for name, c := range map[string]struct {
		f    fakeServer
		want error
	}{
		"unknown export": {fakeServer{flags: flagFixed, goReply: func(w io.Writer) {
			reply(w, optGo, repErrUnknown, []byte("no such export"))
		}}, ErrExport},
		"ack without info": {fakeServer{flags: flagFixed, goReply: func(w io.Writer) {
			reply(w, optGo, repAck, nil)
		}}, ErrProtocol},
		"not fixed newstyle": {fakeServer{flags: 0}, ErrProtocol},
		"short info": {fakeServer{flags: flagFixed, goReply: func(w io.Writer) {
			reply(w, optGo, repInfo, []byte{0, 0, 1})
		}}, ErrProtocol},
		"wrong option": {fakeServer{flags: flagFixed, goReply: func(w io.Writer) {
			reply(w, optAbort, repAck, nil)
		}}, ErrProtocol},
		"closed": {fakeServer{flags: flagFixed, goReply: func(w io.Writer) {}}, ErrProtocol},
	} {
		if _, err := handshakeWith(t, c.f); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}

	if _, err := Handshake(struct {
		io.Reader
		io.Writer
	}{strings.NewReader("HTTP/1.1 400 Bad Request\r\n\r\n"), io.Discard}, "x"); !errors.Is(err, ErrProtocol) {
		t.Errorf("not an NBD server: %v", err)
	}
}

// TestHandshakeServers negotiates with the two servers the issue names.
func TestHandshakeServers(t *testing.T) {
	img := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(img, bytes.Repeat([]byte{1}, 5*4096), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, serve := range map[string]func(testing.TB, string) *qemu.StoreServer{
		"nbdkit":     qemu.ServeNbdkit,
		"nbd-server": qemu.ServeNBDServer,
	} {
		t.Run(name, func(t *testing.T) {
			s := serve(t, img)
			for _, export := range []string{s.Export, "nosuch"} {
				c, err := net.Dial("tcp", s.HostURL[len("nbd://"):strings.LastIndexByte(s.HostURL, '/')])
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck // TCP supports deadlines
				ex, err := Handshake(c, export)
				c.Close()
				if export == "nosuch" {
					// nbdkit serves its one export under any name.
					if name == "nbd-server" && !errors.Is(err, ErrExport) {
						t.Errorf("unknown export: %+v, %v", ex, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%v\n%s", err, s.Log())
				}
				if ex.Size != 5*4096 || ex.Flags&FlagHasFlags == 0 || ex.Flags&FlagReadOnly == 0 {
					t.Errorf("export %+v: want 20480 bytes, read-only", ex)
				}
			}
		})
	}
}

func FuzzHandshake(f *testing.F) {
	var good bytes.Buffer
	good.Write(binary.BigEndian.AppendUint64(nil, magicInit))
	good.Write(binary.BigEndian.AppendUint64(nil, magicOpt))
	good.Write([]byte{0, 3})
	reply(&good, optGo, repInfo, infoExportReply(4096, 3))
	reply(&good, optGo, repAck, nil)
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:20])
	f.Fuzz(func(t *testing.T, b []byte) {
		ex, err := Handshake(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(b), io.Discard}, "store")
		if err == nil && ex.Size == 0 && len(b) < 18 {
			t.Fatalf("accepted %d bytes", len(b))
		}
	})
}
