package serve

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestDynamic: a system is built on the first request (clients get a
// waiting script meanwhile), served once built, rebuilt when its profile
// link moves, and a failed build is reported and retried.
func TestDynamic(t *testing.T) {
	store := t.TempDir()
	for _, d := range []string{"sys-a", "sys-b", "sys-bad"} {
		if err := os.Mkdir(filepath.Join(store, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	profile := filepath.Join(t.TempDir(), "profile")
	if err := os.Symlink(filepath.Join(store, "sys-a"), profile); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var builds atomic.Int32
	build := func(ctx context.Context, top, dir string) error {
		builds.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		if strings.HasSuffix(top, "bad") {
			return errors.New("no kernel")
		}
		tmp := dir + ".tmp"
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, "netboot.ipxe"), []byte("#!ipxe\n# "+filepath.Base(top)+"\n"), 0o644); err != nil {
			return err
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		return os.Rename(tmp, dir)
	}
	s, _ := running(t, Options{Dirs: []string{t.TempDir()}, StateDir: filepath.Join(t.TempDir(), "state"),
		Systems: []System{{Name: "web", Source: profile, Build: build}}})
	base := "http://" + s.Addr("http").String()
	script := base + "/_/ipxe/52:54:00:00:00:01"

	waitFor := func(want string) string {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if _, body := get(t, script); strings.Contains(body, want) {
				return body
			}
		}
		_, body := get(t, script)
		t.Fatalf("script never held %q; last:\n%s", want, body)
		return ""
	}

	if code, body := get(t, script); code != 200 || !strings.Contains(body, "echo nbimg: building web, please wait") || !strings.Contains(body, "chain "+script) {
		t.Fatalf("first request: %d %q", code, body)
	}
	if code, _ := get(t, base+"/web/netboot.ipxe"); code != http.StatusServiceUnavailable {
		t.Errorf("file of a system being built: %d, want 503", code)
	}
	release <- struct{}{}
	waitFor("chain " + base + "/web/netboot.ipxe")
	if _, body := get(t, base+"/web/netboot.ipxe"); !strings.Contains(body, "# sys-a") {
		t.Fatalf("built script %q", body)
	}

	// The profile moves: rebuilt, once.
	if err := os.Remove(profile); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(store, "sys-b"), profile); err != nil {
		t.Fatal(err)
	}
	waitFor("building web")
	get(t, script)
	release <- struct{}{}
	waitFor("chain " + base + "/web/netboot.ipxe")
	if _, body := get(t, base+"/web/netboot.ipxe"); !strings.Contains(body, "# sys-b") {
		t.Fatalf("rebuilt script %q", body)
	}

	// A failing build is reported to the client.
	if err := os.Remove(profile); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(store, "sys-bad"), profile); err != nil {
		t.Fatal(err)
	}
	get(t, script)
	release <- struct{}{}
	waitFor("no kernel (retrying)")
	if n := builds.Load(); n != 3 {
		t.Errorf("%d builds, want 3", n)
	}
	if _, m := get(t, base+"/metrics"); !strings.Contains(m, `nbimg_serve_builds_total{system="web",result="ok"} 2`) {
		t.Errorf("metrics:\n%s", m)
	}
}

func TestSystemsChecked(t *testing.T) {
	b := func(context.Context, string, string) error { return nil }
	for _, sys := range [][]System{
		{{Name: "../x", Source: "/x", Build: b}},
		{{Name: "a/b", Source: "/x", Build: b}},
		{{Name: "_", Source: "/x", Build: b}},
		{{Name: "a", Source: "", Build: b}},
		{{Name: "a", Source: "/x", Build: b}, {Name: "a", Source: "/y", Build: b}},
	} {
		if _, err := New(Options{Dirs: []string{t.TempDir()}, StateDir: t.TempDir(), Systems: sys}); err == nil {
			t.Errorf("accepted %+v", sys)
		}
	}
	if _, err := New(Options{Dirs: []string{t.TempDir()}, Systems: []System{{Name: "a", Source: "/x", Build: b}}}); err == nil {
		t.Error("accepted systems without a state directory")
	}
}
