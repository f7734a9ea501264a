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
		{"serve", "--dhcp-range", "10.0.0.10,10.0.0.99", dir},
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
