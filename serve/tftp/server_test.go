package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/testutil"
)

// dirOpener serves the files of one directory (tests only; serve's
// opener is the real one).
func dirOpener(dir string) Opener {
	return OpenerFunc(func(_ context.Context, _ net.Addr, name string) (File, int64, error) {
		if strings.Contains(name, "..") {
			return nil, 0, fs.ErrPermission
		}
		f, err := os.Open(filepath.Join(dir, filepath.Base(name)))
		if err != nil {
			return nil, 0, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, st.Size(), nil
	})
}

func startServer(t testing.TB, srv *Server) *net.UDPAddr {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, pc) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return pc.LocalAddr().(*net.UDPAddr)
}

func writeRandom(t testing.TB, path string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// get is a small TFTP client for the tests: it asks for name with the
// options and returns the file, acknowledging every window's last block
// (or each block when window is 1). drop, when set, drops the first
// arrival of the DATA blocks it names to exercise retransmission.
func get(t testing.TB, server *net.UDPAddr, name string, opts map[string]string, drop map[int]bool) ([]byte, error) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	req := binary.BigEndian.AppendUint16(nil, opRRQ)
	req = append(append(req, name...), 0)
	req = append(append(req, "octet"...), 0)
	keys := []string{"blksize", "tsize", "windowsize", "timeout"}
	for _, k := range keys {
		if v, ok := opts[k]; ok {
			req = append(append(req, k...), 0)
			req = append(append(req, v...), 0)
		}
	}
	if _, err := c.WriteToUDP(req, server); err != nil {
		return nil, err
	}
	blk, win := 512, 1
	var out bytes.Buffer
	buf := make([]byte, 70000)
	expect := 1 // next block index (64-bit counting)
	inWin := 0
	var peer *net.UDPAddr
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			return nil, err
		}
		if peer == nil {
			peer = from
		}
		p := buf[:n]
		switch binary.BigEndian.Uint16(p) {
		case opERROR:
			return nil, fmt.Errorf("error %d: %s", binary.BigEndian.Uint16(p[2:]), bytes.TrimRight(p[4:], "\x00"))
		case opOACK:
			fields := bytes.Split(bytes.TrimRight(p[2:], "\x00"), []byte{0})
			for i := 0; i+1 < len(fields); i += 2 {
				v, _ := strconv.Atoi(string(fields[i+1]))
				switch string(fields[i]) {
				case "blksize":
					blk = v
				case "windowsize":
					win = v
				}
			}
			c.WriteToUDP([]byte{0, opACK, 0, 0}, peer)
		case opDATA:
			b := int(binary.BigEndian.Uint16(p[2:]))
			if drop[expect] && b == expect&0xffff {
				delete(drop, expect)
				continue
			}
			if b != expect&0xffff {
				// Out of order: acknowledge what we have (RFC 7440).
				c.WriteToUDP(binary.BigEndian.AppendUint16([]byte{0, opACK}, uint16(expect-1)), peer)
				inWin = 0
				continue
			}
			out.Write(p[4:])
			expect++
			inWin++
			last := len(p)-4 < blk
			if last || inWin == win {
				c.WriteToUDP(binary.BigEndian.AppendUint16([]byte{0, opACK}, uint16(b)), peer)
				inWin = 0
			}
			if last {
				return out.Bytes(), nil
			}
		}
	}
}

func TestTransfers(t *testing.T) {
	dir := t.TempDir()
	sizes := map[string]int{"empty": 0, "one": 1, "exact": 1024, "odd": 3000, "roll": 512*65536 + 700}
	want := map[string][]byte{}
	for name, n := range sizes {
		if name == "roll" && testing.Short() {
			continue
		}
		want[name] = writeRandom(t, filepath.Join(dir, name), n)
	}
	// The default timeout: shorter ones make a loaded machine (or -race)
	// look like a lost client.
	addr := startServer(t, &Server{Opener: dirOpener(dir)})
	cases := []struct {
		file string
		opts map[string]string
		drop map[int]bool
	}{
		{"empty", nil, nil},
		{"one", map[string]string{"tsize": "0"}, nil},
		{"exact", map[string]string{"blksize": "512"}, nil},
		{"exact", map[string]string{"blksize": "1024"}, nil},
		{"odd", map[string]string{"blksize": "1468", "windowsize": "4"}, map[int]bool{2: true}},
		{"odd", nil, map[int]bool{1: true, 3: true}},
		{"roll", map[string]string{"blksize": "1468", "windowsize": "16"}, map[int]bool{5: true, 65536: true}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s-%v", c.file, c.opts), func(t *testing.T) {
			if c.file == "roll" && testing.Short() {
				t.Skip("block numbers rolling over take 65537 packets: not in -short")
			}
			got, err := get(t, addr, c.file, c.opts, c.drop)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want[c.file]) {
				t.Fatalf("got %d bytes, want %d (content differs)", len(got), len(want[c.file]))
			}
		})
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "f"), 10)
	addr := startServer(t, &Server{Opener: dirOpener(dir)})
	if _, err := get(t, addr, "missing", nil, nil); err == nil || !strings.Contains(err.Error(), "error 1") {
		t.Errorf("missing file: %v, want error 1 (not found)", err)
	}
	if _, err := get(t, addr, "../f", nil, nil); err == nil || !strings.Contains(err.Error(), "error 2") {
		t.Errorf("../f: %v, want error 2 (access violation)", err)
	}
	// A write request, garbage and a huge option are each answered with
	// an error, and the server keeps serving.
	c, err := net.DialUDP("udp4", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	huge := append([]byte{0, opRRQ}, "f\x00octet\x00blksize\x00"...)
	huge = append(huge, bytes.Repeat([]byte("9"), 2000)...)
	for _, pkt := range [][]byte{
		append([]byte{0, opWRQ}, "f\x00octet\x00"...),
		{0xde, 0xad},
		append([]byte{0, opRRQ}, "f\x00octet"...),
		append(huge, 0),
	} {
		if _, err := c.Write(pkt); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 600)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no answer to %q: %v", pkt, err)
		}
		if binary.BigEndian.Uint16(buf[:n]) != opERROR {
			t.Errorf("answer to %q is %x, want an ERROR", pkt, buf[:n])
		}
	}
	if got, err := get(t, addr, "f", nil, nil); err != nil || len(got) != 10 {
		t.Fatalf("after bad packets: %d bytes, %v", len(got), err)
	}
}

func TestClientVanishes(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "f"), 100000)
	done := make(chan Transfer, 1)
	addr := startServer(t, &Server{Opener: dirOpener(dir), Timeout: 50 * time.Millisecond, Retries: 2, Done: func(x Transfer) { done <- x }})
	c, err := net.DialUDP("udp4", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(append([]byte{0, opRRQ}, "f\x00octet\x00"...)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case x := <-done:
		if !errors.Is(x.Err, ErrTimeout) {
			t.Fatalf("transfer ended with %v, want ErrTimeout", x.Err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the transfer to a vanished client did not end")
	}
}

func TestBusy(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "f"), 100000)
	addr := startServer(t, &Server{Opener: dirOpener(dir), MaxTransfers: 1, Timeout: time.Second})
	// The first transfer stalls (never acknowledged); the second is refused.
	c1, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if _, err := c1.WriteTo(append([]byte{0, opRRQ}, "f\x00octet\x00"...), addr); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 600)
	c1.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, _, err := c1.ReadFrom(buf); err != nil {
		t.Fatal(err)
	}
	_, err = get(t, addr, "f", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("second transfer: %v, want busy", err)
	}
}

// TestCurl fetches files with curl's TFTP client, an independent
// implementation (blksize and tsize options).
func TestCurl(t *testing.T) {
	curl := testutil.Tool(t, "curl", "curl")
	dir := t.TempDir()
	want := writeRandom(t, filepath.Join(dir, "kernel"), 2<<20+17)
	addr := startServer(t, &Server{Opener: dirOpener(dir)})
	for _, blk := range []string{"512", "1468", "8192"} {
		out := filepath.Join(t.TempDir(), "out")
		cmd := exec.Command(curl, "-sS", "--tftp-blksize", blk, "-o", out, fmt.Sprintf("tftp://%s/kernel", addr))
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("curl blksize %s: %v\n%s", blk, err, b)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("curl blksize %s: %d bytes, want %d", blk, len(got), len(want))
		}
	}
	cmd := exec.Command(curl, "-sS", "-o", filepath.Join(t.TempDir(), "x"), fmt.Sprintf("tftp://%s/nothing", addr))
	if b, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("curl fetched a missing file:\n%s", b)
	}
}

// TestBusybox fetches with busybox's tftp client (blksize option).
func TestBusybox(t *testing.T) {
	bb := testutil.Tool(t, "busybox", "busybox-static")
	dir := t.TempDir()
	want := writeRandom(t, filepath.Join(dir, "initrd"), 300000)
	addr := startServer(t, &Server{Opener: dirOpener(dir)})
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command(bb, "tftp", "-g", "-b", "1400", "-r", "initrd", "-l", out, "127.0.0.1", strconv.Itoa(addr.Port))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("busybox tftp: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("busybox tftp: %d bytes, want %d", len(got), len(want))
	}
}
