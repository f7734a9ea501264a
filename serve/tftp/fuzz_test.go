package tftp

import (
	"strconv"
	"testing"
)

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte("\x00\x01pxelinux.0\x00octet\x00"))
	f.Add([]byte("\x00\x01bzImage\x00octet\x00blksize\x001468\x00tsize\x000\x00windowsize\x0016\x00"))
	f.Add([]byte("\x00\x02x\x00netascii\x00"))
	f.Add([]byte("\x00\x01../../etc/passwd\x00octet\x00blksize\x0099999999999999999999\x00"))
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := ParseRequest(p)
		if err != nil {
			return
		}
		if r.Filename == "" || (r.Mode != "octet" && r.Mode != "netascii") {
			t.Fatalf("accepted %q as %+v", p, r)
		}
		n := Negotiate(r.Options, 12345, 0)
		if n.BlockSize < MinBlockSize || n.BlockSize > MaxBlockSize || n.WindowSize < 1 || n.WindowSize > MaxWindowSize {
			t.Fatalf("negotiated %+v from %q", n, p)
		}
		for _, o := range n.Ack {
			if o.Name == "blksize" && o.Value != strconv.Itoa(n.BlockSize) {
				t.Fatalf("acknowledged blksize %s, use %d", o.Value, n.BlockSize)
			}
		}
		oack := appendOACK(nil, n.Ack)
		if len(oack) > 2+len(p)+32 {
			t.Fatalf("OACK of %d bytes for a request of %d", len(oack), len(p))
		}
	})
}

func FuzzParseAck(f *testing.F) {
	f.Add([]byte{0, 4, 0, 1})
	f.Add([]byte{0, 5, 0, 1, 'x', 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		parseAck(p) //nolint:errcheck // must not panic
	})
}
