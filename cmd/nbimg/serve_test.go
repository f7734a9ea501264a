package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/testutil"
)

// lockedBuffer is a bytes.Buffer for writers and readers in different
// goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestServe runs nbimg serve in-process on loopback, fetches a file over
// HTTP, reloads it with SIGHUP and stops it by canceling its context.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "netboot.ipxe"), []byte("#!ipxe\nboot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"nbimg", "serve", "--listen", "127.0.0.1", "--dhcp=false", "--tftp-port", "0", "--nbd-port", "0",
			"--http-port", strconv.Itoa(port), "--ipxe-dir", "", "--log-format", "json", dir}, io.Discard, &stderr)
	}()
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/netboot.ipxe"
	var body []byte
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(url)
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(end) {
			t.Fatalf("nbimg serve did not answer: %v", err)
		}
	}
	if string(body) != "#!ipxe\nboot\n" {
		t.Errorf("got %q", body)
	}
	// SIGHUP reloads (the command has its handler in place once it serves).
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), `"msg":"reloaded"`); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no reload after SIGHUP:\n%s", stderr.String())
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("nbimg serve did not stop")
	}
	if !strings.Contains(stderr.String(), `"path":"/netboot.ipxe"`) {
		t.Errorf("no log line for the request:\n%s", stderr.String())
	}
}

func TestServeUsage(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"serve"},
		{"serve", "--dhcp-range", "10.0.0.10,10.0.0.99", dir},                                          // no address
		{"serve", "--dhcp=false", "--dhcp-range", "10.0.0.10,10.0.0.99", "--address", "10.0.0.1", dir}, // no DHCP
		{"serve", "--address", "10.0.0.1", "--dhcp-range", "10.0.1.10,10.0.1.99", dir},                 // another subnet
		{"serve", "--address", "10.0.0.1", "--dhcp-range", "10.0.0.10", dir},
		{"serve", "--http-port", "0", "--tftp-port", "0", "--nbd-port", "0", dir}, // DHCP without an address
		{"serve", "--address", "fe80::1", dir},
		{"serve", "--dhcp=false", "--log-format", "xml", dir},
	} {
		code, _, stderr := runApp(t, args...)
		if code != exitUsage || strings.Count(strings.TrimSpace(stderr), "\n") > 1 {
			t.Errorf("%v: exit %d, stderr %q; want a usage error", args, code, stderr)
		}
	}
}

// TestServeSystem: with --system, the fixture is built on the first
// request (the client is told to wait) and then served: its netboot.ipxe
// boots the toplevel and its initrd is the system's stage 1 followed by
// the store image.
func TestServeSystem(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the fixture's store image: not in -short")
	}
	f := testutil.LoadFixture(t)
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"nbimg", "serve", "--listen", "127.0.0.1", "--dhcp=false", "--tftp-port", "0", "--nbd-port", "0",
			"--http-port", strconv.Itoa(port), "--ipxe-dir", "", "--state-dir", t.TempDir(), "--comp", "gzip",
			"--system", "fixture=" + filepath.Join(f.Dir, "toplevel"), t.TempDir()}, io.Discard, &stderr)
	}()
	defer func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("exit %d:\n%s", code, stderr.String())
		}
	}()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	get := func(path string) (int, []byte) {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			resp, err := http.Get(base + path)
			if err == nil {
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				return resp.StatusCode, b
			}
			if time.Now().After(end) {
				t.Fatalf("nbimg serve did not answer: %v", err)
			}
		}
	}
	script := "/_/ipxe/52:54:00:00:00:01"
	_, first := get(script)
	if !strings.Contains(string(first), "building fixture, please wait") {
		t.Fatalf("first answer:\n%s", first)
	}
	for end := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		_, b := get(script)
		if strings.Contains(string(b), "chain "+base+"/fixture/netboot.ipxe") {
			break
		}
		if time.Now().After(end) || strings.Contains(string(b), "retrying") {
			t.Fatalf("no build:\n%s\nlog:\n%s", b, stderr.String())
		}
	}
	if code, b := get("/fixture/netboot.ipxe"); code != 200 || !strings.Contains(string(b), "init="+f.Init) {
		t.Fatalf("netboot.ipxe: %d\n%s", code, b)
	}
	base1, err := os.ReadFile(f.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	code, initrd := get("/fixture/initrd")
	if code != 200 || len(initrd) < len(base1)+1<<20 || !bytes.Equal(initrd[:len(base1)], base1) {
		t.Fatalf("initrd: %d, %d bytes (stage 1 has %d)", code, len(initrd), len(base1))
	}
}
