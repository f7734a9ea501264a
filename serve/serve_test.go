package serve

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbimg/nbimg/serve/dhcp"
)

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// syncBuffer collects logs from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running starts a Server on loopback with every service but DHCP and
// returns it with its log.
func running(t testing.TB, opts Options) (*Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	opts.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	if opts.HTTPAddr == "" {
		opts.HTTPAddr = "127.0.0.1:0"
	}
	if opts.TFTPAddr == "" {
		opts.TFTPAddr = "127.0.0.1:0"
	}
	if opts.NBDAddr == "" {
		opts.NBDAddr = "127.0.0.1:0"
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Started():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return s, logs
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"bzImage": "bzImage", "/bzImage": "bzImage", "//a//b/": "a/b", "\\pxelinux.cfg\\default": "pxelinux.cfg/default",
		"a/./b": "a/b", "/etc/passwd": "etc/passwd",
	} {
		got, err := CleanName(in)
		if err != nil || got != want {
			t.Errorf("CleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"..", "../x", "a/../../x", "a/..", "/", "", "a\x00b", "..\\x", "a/b/../../.."} {
		if got, err := CleanName(in); !errors.Is(err, ErrBadPath) {
			t.Errorf("CleanName(%q) = %q, %v; want ErrBadPath", in, got, err)
		}
	}
}

func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"a", "../a", "/a/b", "a\\..\\b", "a/./../b", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := CleanName(s)
		if err != nil {
			return
		}
		if !fs.ValidPath(got) || strings.HasPrefix(got, "/") || got == "." {
			t.Fatalf("CleanName(%q) = %q", s, got)
		}
		for _, el := range strings.Split(got, "/") {
			if el == ".." {
				t.Fatalf("CleanName(%q) = %q", s, got)
			}
		}
	})
}

// TestNoEscape: no protocol reaches a file outside the roots, whether by
// "..", an absolute name or a symbolic link.
func TestNoEscape(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "secret"), []byte("secret"))
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "bzImage"), []byte("kernel"))
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "abs-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../"+filepath.Base(outside)+"/secret", filepath.Join(root, "rel-link")); err != nil {
		t.Fatal(err)
	}
	s, _ := running(t, Options{Dirs: []string{root}})
	r := s.state().roots
	for _, name := range []string{"../" + filepath.Base(outside) + "/secret", filepath.Join(outside, "secret"), "abs-link", "rel-link", "/../secret"} {
		if f, _, err := r.open(name); err == nil {
			f.Close()
			t.Errorf("opened %q", name)
		}
		resp, err := http.Get("http://" + s.Addr("http").String() + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || bytes.Contains(b, []byte("secret")) {
			t.Errorf("http %q: %s %q", name, resp.Status, b)
		}
	}
	// Raw request lines that net/http's client would clean.
	for _, target := range []string{"/../" + filepath.Base(outside) + "/secret", "/%2e%2e/secret", "/abs-link", "//etc/passwd"} {
		c, err := net.Dial("tcp", s.Addr("http").String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET %s HTTP/1.0\r\n\r\n", target)
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.HasPrefix(b, []byte("HTTP/1.0 200")) || bytes.Contains(b, []byte("secret\n")) || bytes.HasSuffix(b, []byte("secret")) {
			t.Errorf("raw GET %s: %q", target, b)
		}
	}
	if f, _, err := r.open("/bzImage"); err != nil {
		t.Errorf("/bzImage: %v", err)
	} else {
		f.Close()
	}
}

func TestHTTP(t *testing.T) {
	root := t.TempDir()
	data := randomBytes(t, 1<<20+3)
	writeFile(t, filepath.Join(root, "sys", "initrd"), data)
	s, logs := running(t, Options{Dirs: []string{root}})
	base := "http://" + s.Addr("http").String()
	for _, rg := range [][2]int{{0, 0}, {5, 100}, {len(data) - 10, len(data) - 1}} {
		req, err := http.NewRequest("GET", base+"/sys/initrd", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", rg[0], rg[1]))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, data[rg[0]:rg[1]+1]) {
			t.Fatalf("range %v: %s, %d bytes, %v", rg, resp.Status, len(b), err)
		}
	}
	resp, err := http.Get(base + "/sys/initrd")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("whole file: %d bytes, %v", len(b), err)
	}
	for _, c := range []struct {
		method, path string
		status       int
	}{{"PUT", "/sys/initrd", 405}, {"DELETE", "/sys/initrd", 405}, {"GET", "/sys", 404}, {"GET", "/missing", 404}, {"HEAD", "/sys/initrd", 200}} {
		req, err := http.NewRequest(c.method, base+c.path, strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: %s, want %d", c.method, c.path, resp.Status, c.status)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "sys", "initrd")); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# TYPE nbimg_serve_requests_total counter",
		`nbimg_serve_requests_total{proto="http",result="ok"} 5`,
		fmt.Sprintf(`nbimg_serve_bytes_total{proto="http"} %d`, 1+96+10+len(data)),
	} {
		if !strings.Contains(string(b), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, b)
		}
	}
	// One log line per request, with the path and the bytes.
	n := strings.Count(logs.String(), `"path":"/sys/initrd"`)
	if n != 7 {
		t.Errorf("%d log lines for /sys/initrd, want 7:\n%s", n, logs)
	}
}

func TestDecide(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"undionly.kpxe", "ipxe.efi", "netboot.ipxe", "bzImage", "web/netboot.ipxe", "web/nixos.efi", "web/nixos-aa64.efi", "pi/start4.elf"} {
		writeFile(t, filepath.Join(root, f), []byte(f))
	}
	machines := filepath.Join(t.TempDir(), "machines.json")
	writeFile(t, machines, []byte(`{"52:54:00:00:00:02": {"dir": "web", "cmdline": "console=ttyS0 x=1"}}`))
	s, _ := running(t, Options{Dirs: []string{root, filepath.Join(root, "pi")}, Machines: machines, Advertise: net.IPv4(127, 0, 0, 1)})
	base := "http://" + s.Addr("http").String()
	m1, _ := net.ParseMAC("52:54:00:00:00:01")
	m2, _ := net.ParseMAC("52:54:00:00:00:02")
	cases := []struct {
		c    dhcp.Client
		want string
	}{
		{dhcp.Client{MAC: m1, Class: dhcp.ClassBIOS}, "undionly.kpxe"},
		{dhcp.Client{MAC: m1, Class: dhcp.ClassEFIx86}, "ipxe.efi"},
		{dhcp.Client{MAC: m2, Class: dhcp.ClassEFIx86}, "web/nixos.efi"},
		{dhcp.Client{MAC: m2, Class: dhcp.ClassEFIArm64}, "web/nixos-aa64.efi"},
		{dhcp.Client{MAC: m1, Class: dhcp.ClassEFIArm64}, ""},
		{dhcp.Client{MAC: m1, Class: dhcp.ClassHTTPx86}, base + "/ipxe.efi"},
		{dhcp.Client{MAC: m2, Class: dhcp.ClassHTTPx86}, base + "/web/nixos.efi"},
		{dhcp.Client{MAC: m1, Class: dhcp.ClassBIOS, IPXE: true}, base + "/_/ipxe/52:54:00:00:00:01"},
		{dhcp.Client{MAC: m1, Class: dhcp.ClassPi}, ""},
	}
	for _, c := range cases {
		b, ok, err := s.Decide(context.Background(), c.c)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			b.File = ""
		}
		if c.c.Class == dhcp.ClassPi {
			if !ok {
				t.Errorf("pi: not answered")
			}
			continue
		}
		if b.File != c.want {
			t.Errorf("%s %v ipxe=%v: %q, want %q", c.c.MAC, c.c.Class, c.c.IPXE, b.File, c.want)
		}
	}
	script := func(mac string) string {
		resp, err := http.Get(base + "/_/ipxe/" + mac)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("script for %s: %s %v", mac, resp.Status, err)
		}
		return string(b)
	}
	if got, want := script("52:54:00:00:00:01"), "#!ipxe\nchain "+base+"/netboot.ipxe\n"; got != want {
		t.Errorf("default script %q, want %q", got, want)
	}
	if got, want := script("52-54-00-00-00-02"), "#!ipxe\nset cmdline console=ttyS0 x=1\nchain "+base+"/web/netboot.ipxe\n"; got != want {
		t.Errorf("machine script %q, want %q", got, want)
	}

	// Reload picks up a new machine map; a broken one keeps the old.
	writeFile(t, machines, []byte(`{"52:54:00:00:00:01": {"dir": "web"}}`))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := script("52:54:00:00:00:01"); !strings.Contains(got, "/web/netboot.ipxe") {
		t.Errorf("after reload: %q", got)
	}
	writeFile(t, machines, []byte(`{"52:54:00:00:00:01": {"dir": "../etc"}}`))
	if err := s.Reload(); err == nil {
		t.Error("reload accepted a machine map with ../")
	}
	if got := script("52:54:00:00:00:01"); !strings.Contains(got, "/web/netboot.ipxe") {
		t.Errorf("after a failed reload: %q", got)
	}
}

func TestLoadMachinesErrors(t *testing.T) {
	for _, body := range []string{`{"zz": {}}`, `{"52:54:00:00:00:01": {"cmdline": "a\nb"}}`, `[`, `{"52:54:00:00:00:01": {"dir": "/.."}}`} {
		p := filepath.Join(t.TempDir(), "m.json")
		writeFile(t, p, []byte(body))
		if _, err := LoadMachines(p); err == nil {
			t.Errorf("accepted %s", body)
		}
	}
}

// TestAPI: pixiecore's API mode. Machines the API does not know get no
// answer; known ones get a script whose files come through this server.
func TestAPI(t *testing.T) {
	files := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/boot/52:54:00:00:00:01":
			json.NewEncoder(w).Encode(map[string]any{
				"kernel":  "/files/kernel",
				"initrd":  []string{"/files/initrd"},
				"cmdline": map[string]any{"console": "ttyS0", "quiet": true, "extra": `{{ ID "/files/extra" }}`},
				"message": "booting\nnow",
			})
		case "/files/kernel":
			io.WriteString(w, "KERNEL")
		case "/files/initrd":
			io.WriteString(w, "INITRD")
		default:
			http.NotFound(w, r)
		}
	}))
	defer files.Close()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "undionly.kpxe"), []byte("x"))
	s, _ := running(t, Options{Dirs: []string{root}, API: files.URL, Advertise: net.IPv4(127, 0, 0, 1)})
	m1, _ := net.ParseMAC("52:54:00:00:00:01")
	m2, _ := net.ParseMAC("52:54:00:00:00:02")
	if _, ok, err := s.Decide(context.Background(), dhcp.Client{MAC: m2, Class: dhcp.ClassBIOS}); ok || err != nil {
		t.Errorf("unknown machine answered (%v)", err)
	}
	if b, ok, err := s.Decide(context.Background(), dhcp.Client{MAC: m1, Class: dhcp.ClassBIOS}); !ok || err != nil || b.File != "undionly.kpxe" {
		t.Errorf("known machine: %+v %v %v", b, ok, err)
	}
	base := "http://" + s.Addr("http").String()
	resp, err := http.Get(base + "/_/ipxe/52:54:00:00:00:01")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 5 || lines[1] != "echo booting now" || !strings.HasPrefix(lines[2], "kernel --name kernel "+base+"/_/file/") ||
		!strings.HasSuffix(lines[2], " console=ttyS0 extra="+base+"/_/file/"+s.fileID("/files/extra")+" quiet initrd=initrd0") || lines[4] != "boot" {
		t.Fatalf("script:\n%s", b)
	}
	for i, want := range map[int]string{2: "KERNEL", 3: "INITRD"} {
		var u string
		for _, f := range strings.Fields(lines[i]) {
			if strings.HasPrefix(f, base+"/_/file/") {
				u = f
				break
			}
		}
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(got) != want {
			t.Errorf("%s: %q %v", u, got, err)
		}
	}
	resp, err = http.Get(base + "/_/file/0123456789abcdef01234567")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("an unknown file ID: %s", resp.Status)
	}
}

// TestHTTPHostile: a client stuck in its headers and one with huge headers
// do not stop others from being served.
func TestHTTPHostile(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "bzImage"), []byte("kernel"))
	s, _ := running(t, Options{Dirs: []string{root}})
	addr := s.Addr("http").String()
	stuck, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	if _, err := io.WriteString(stuck, "GET /bzImage HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	huge, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer huge.Close()
	fmt.Fprintf(huge, "GET /bzImage HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 1<<20))
	huge.SetReadDeadline(time.Now().Add(10 * time.Second))
	// The answer is 431, or a reset if the server hung up while the
	// headers were still arriving; never a file, never a hang.
	b, err := io.ReadAll(io.LimitReader(huge, 4096))
	var ne net.Error
	if (errors.As(err, &ne) && ne.Timeout()) || (len(b) > 0 && !bytes.HasPrefix(b, []byte("HTTP/1.1 431"))) {
		t.Errorf("huge headers: %q (%v)", b, err)
	}
	resp, err := http.Get("http://" + addr + "/bzImage")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "kernel" {
		t.Fatalf("while others misbehave: %q %v", body, err)
	}
}
