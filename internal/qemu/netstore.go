package qemu

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/testutil"
)

// StoreServer is an NBD or HTTP server on 127.0.0.1 serving a store image
// read-only to tests (and to QEMU guests, which reach it at GuestHost).
type StoreServer struct {
	// Port it listens on (127.0.0.1).
	Port int
	// Export is the NBD export name ("" for HTTP).
	Export string
	// HostURL is the image's URL from the host; GuestURL from a guest on
	// QEMU's user network.
	HostURL, GuestURL string

	dir  string // served by HTTP
	mu   sync.Mutex
	argv []string // the server's command, for Restart
	cmd  *exec.Cmd
	log  bytes.Buffer
	done chan struct{}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ServeNbdkit serves image read-only with nbdkit's file plugin (any export
// name is accepted; the URL names "store").
func ServeNbdkit(t testing.TB, image string) *StoreServer {
	t.Helper()
	bin := testutil.Tool(t, "nbdkit", "nbdkit")
	port := FreePort(t)
	s := newNBD(port, "store")
	s.start(t, exec.Command(bin, "-f", "-r", "-i", "127.0.0.1", "-p", strconv.Itoa(port), "file", image))
	s.waitPort(t)
	return s
}

// ServeNBDServer serves image read-only with nbd-server (Debian's), as the
// export "store".
func ServeNBDServer(t testing.TB, image string) *StoreServer {
	t.Helper()
	return ServeNBDServerOn(t, image, FreePort(t))
}

// ServeNBDServerOn is ServeNBDServer on a given port (from FreePort), for
// tests that must know the URL before the image exists.
func ServeNBDServerOn(t testing.TB, image string, port int) *StoreServer {
	t.Helper()
	bin := testutil.Tool(t, "nbd-server", "nbd-server")
	s := newNBD(port, "store")
	abs, err := filepath.Abs(image)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "nbd-server.conf")
	text := fmt.Sprintf("[generic]\nlistenaddr = 127.0.0.1\nport = %d\n[store]\nexportname = %s\nreadonly = true\n", port, abs)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// In its debug mode (-d, foreground) nbd-server exits after the first
	// failed negotiation; as a daemon it forks per client. Run it as a
	// daemon and stop it through its PID file.
	pidFile := filepath.Join(filepath.Dir(conf), "nbd-server.pid")
	out, err := exec.Command(bin, "-C", conf, "-p", pidFile).CombinedOutput()
	if err != nil {
		t.Fatalf("nbd-server: %v\n%s", err, out)
	}
	var pid int
	for i := 0; i < 100; i++ {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if pid <= 0 {
		t.Fatalf("nbd-server wrote no PID file:\n%s", out)
	}
	t.Cleanup(func() {
		if p, err := os.FindProcess(pid); err == nil {
			p.Signal(syscall.SIGTERM) //nolint:errcheck // it may have exited already
		}
	})
	s.log.Write(out)
	s.waitPort(t)
	return s
}

func newNBD(port int, export string) *StoreServer {
	return &StoreServer{
		Port: port, Export: export,
		HostURL:  fmt.Sprintf("nbd://127.0.0.1:%d/%s", port, export),
		GuestURL: fmt.Sprintf("nbd://%s:%d/%s", GuestHost, port, export),
	}
}

// ServeHTTPLater serves dir over HTTP with python3's http.server, started
// after delay (0: now, and waits until it listens), so a guest can be
// booted before its server exists. name is the image's file name in dir.
func ServeHTTPLater(t testing.TB, dir, name string, delay time.Duration) *StoreServer {
	t.Helper()
	s := NewHTTPServer(t, dir, name)
	s.StartHTTP(t, delay)
	return s
}

// NewHTTPServer returns an HTTP store server for dir with its port and
// URLs chosen but not started: start it with StartHTTP.
func NewHTTPServer(t testing.TB, dir, name string) *StoreServer {
	t.Helper()
	testutil.Tool(t, "python3", "python3")
	port := FreePort(t)
	return &StoreServer{
		Port:     port,
		HostURL:  fmt.Sprintf("http://127.0.0.1:%d/%s", port, name),
		GuestURL: fmt.Sprintf("http://%s:%d/%s", GuestHost, port, name),
		dir:      dir,
	}
}

// StartHTTP starts python3's http.server after delay (0: now, and waits
// until it listens).
func (s *StoreServer) StartHTTP(t testing.TB, delay time.Duration) {
	t.Helper()
	bin := testutil.Tool(t, "python3", "python3")
	cmd := exec.Command(bin, "-m", "http.server", "--bind", "127.0.0.1", "--directory", s.dir, strconv.Itoa(s.Port))
	if delay == 0 {
		s.start(t, cmd)
		s.waitPort(t)
		return
	}
	timer := time.AfterFunc(delay, func() { s.start(t, cmd) })
	t.Cleanup(func() { timer.Stop() })
}

func (s *StoreServer) start(t testing.TB, cmd *exec.Cmd) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd.Stdout = &lockedWriter{mu: &s.mu, w: &s.log}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Errorf("starting %s: %v", cmd.Path, err)
		return
	}
	s.cmd = cmd
	s.argv = cmd.Args
	s.done = make(chan struct{})
	go func() { cmd.Wait(); close(s.done) }() //nolint:errcheck // killed at cleanup; the log says why it ended
	t.Cleanup(s.stop)
}

func (s *StoreServer) stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill() //nolint:errcheck // it may have exited already
	<-done
}

// Restart kills the server (its clients see their connections drop),
// waits down, and starts the same command again on the same port, waiting
// until it listens. Not for nbd-server, which runs as a daemon. It may be
// called from any goroutine.
func (s *StoreServer) Restart(down time.Duration) error {
	s.mu.Lock()
	argv := s.argv
	s.mu.Unlock()
	if len(argv) == 0 {
		return fmt.Errorf("store server: nothing to restart")
	}
	s.stop()
	time.Sleep(down)
	cmd := exec.Command(argv[0], argv[1:]...)
	s.mu.Lock()
	cmd.Stdout = &lockedWriter{mu: &s.mu, w: &s.log}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("restarting %s: %w", argv[0], err)
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	done := s.done
	s.mu.Unlock()
	go func() { cmd.Wait(); close(done) }() //nolint:errcheck // killed at cleanup
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("store server not listening on port %d after a restart:\n%s", s.Port, s.Log())
}

// OnConsole returns a writer for Config.Console that calls f once, in a
// goroutine of its own, when the console shows want, and copies the
// console to next (nil: nowhere).
func OnConsole(want string, next io.Writer, f func()) io.Writer {
	return &consoleTrigger{want: []byte(want), next: next, f: f}
}

type consoleTrigger struct {
	want, tail []byte
	next       io.Writer
	f          func()
	fired      bool
}

func (c *consoleTrigger) Write(p []byte) (int, error) {
	if c.next != nil {
		c.next.Write(p) //nolint:errcheck // a copy for the reader, best effort
	}
	if !c.fired {
		c.tail = append(c.tail, p...)
		if bytes.Contains(c.tail, c.want) {
			c.fired = true
			go c.f()
		}
		if keep := len(c.want); len(c.tail) > keep {
			c.tail = append(c.tail[:0], c.tail[len(c.tail)-keep:]...)
		}
	}
	return len(p), nil
}

// TestCA is a throwaway certificate authority for https tests.
type TestCA struct {
	// CertPEM is the CA certificate, PEM encoded (what --store-ca takes).
	CertPEM []byte
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
}

// NewTestCA makes a CA valid from an hour ago for a day.
func NewTestCA(t testing.TB) *TestCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "nbimg test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &TestCA{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), cert: cert, key: key}
}

// ServerCert issues a server certificate for the given IP addresses.
func (ca *TestCA) ServerCert(t testing.TB, ips ...net.IP) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "nbimg test server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// ServeHTTPS serves dir read-only over https (Go's file server, with
// ranges) on 127.0.0.1, with a certificate from ca for 127.0.0.1 and
// GuestHost. name is the image's file name in dir.
func ServeHTTPS(t testing.TB, dir, name string, ca *TestCA) *StoreServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	s := &StoreServer{
		Port:     port,
		HostURL:  fmt.Sprintf("https://127.0.0.1:%d/%s", port, name),
		GuestURL: fmt.Sprintf("https://%s:%d/%s", GuestHost, port, name),
		dir:      dir,
	}
	cert := ca.ServerCert(t, net.IPv4(127, 0, 0, 1), net.ParseIP(GuestHost))
	srv := &http.Server{
		Handler:           http.FileServer(http.Dir(dir)),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(&lockedWriter{mu: &s.mu, w: &s.log}, "", 0),
	}
	go srv.ServeTLS(l, "", "") //nolint:errcheck // ends with Close at cleanup
	t.Cleanup(func() { srv.Close() })
	return s
}

// Log returns what the server printed so far.
func (s *StoreServer) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

func (s *StoreServer) waitPort(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		s.mu.Lock()
		done := s.done
		s.mu.Unlock()
		select {
		case <-done:
			t.Fatalf("store server exited before listening:\n%s", s.Log())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("store server not listening on port %d after 30 s:\n%s", s.Port, s.Log())
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
