package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/qemu"
)

func image(n int) ([]byte, string) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7 / 3)
	}
	s := sha256.Sum256(b)
	return b, hex.EncodeToString(s[:])
}

func fast(o *Options) {
	o.Backoff = func(int) time.Duration { return time.Millisecond }
}

func TestFetchRetriesAndResumes(t *testing.T) {
	img, sum := image(3<<20 + 5)
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			http.Error(w, "not yet", http.StatusServiceUnavailable)
		case 2: // half, then the connection drops
			w.Header().Set("Content-Length", fmt.Sprint(len(img)))
			w.Write(img[:len(img)/2]) //nolint:errcheck // the client sees the short body
			panic(http.ErrAbortHandler)
		default:
			http.ServeContent(w, r, "img", time.Unix(1, 0), strings.NewReader(string(img)))
		}
	}))
	defer srv.Close()
	dest := filepath.Join(t.TempDir(), "nix-store.squashfs")
	var lines []string
	o := Options{URL: srv.URL, Size: int64(len(img)), SHA256: sum, Dest: dest,
		Log: func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }}
	fast(&o)
	if err := Fetch(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dest)
	if err != nil || string(got) != string(img) {
		t.Fatalf("content differs (%v)", err)
	}
	if calls.Load() != 3 {
		t.Errorf("%d requests, want 3", calls.Load())
	}
	text := strings.Join(lines, "\n")
	if !strings.Contains(text, "waiting for "+srv.URL) || !strings.Contains(text, "done") {
		t.Errorf("console lines:\n%s", text)
	}
	if _, err := os.Stat(dest + ".part"); !os.IsNotExist(err) {
		t.Errorf("partial file left behind: %v", err)
	}
}

func TestFetchRefusesWrongImage(t *testing.T) {
	img, sum := image(100000)
	bad := append([]byte(nil), img...)
	bad[5000] ^= 1
	for name, c := range map[string]struct {
		body   []byte
		length bool // send Content-Length (else chunked)
		want   error
	}{
		"tampered":      {bad, false, ErrMismatch},
		"short":         {img[:99999], true, ErrSize},
		"long":          {append(append([]byte(nil), img...), 0), true, ErrSize},
		"long chunked":  {append(append([]byte(nil), img...), 0), false, ErrSize},
		"short chunked": {img[:99999], false, ErrGiveUp}, // a cut transfer: retried
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c.length {
				w.Header().Set("Content-Length", fmt.Sprint(len(c.body)))
			}
			w.Write(c.body) //nolint:errcheck // test server
		}))
		dest := filepath.Join(t.TempDir(), "img")
		o := Options{URL: srv.URL, Size: int64(len(img)), SHA256: sum, Dest: dest, GiveUp: time.Second}
		fast(&o)
		err := Fetch(context.Background(), o)
		srv.Close()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Errorf("%s: the refused image is at its destination", name)
		}
	}
}

func TestFetchGivesUp(t *testing.T) {
	_, sum := image(10)
	now := time.Unix(0, 0)
	o := Options{URL: fmt.Sprintf("http://127.0.0.1:%d/x", qemu.FreePort(t)), Size: 10, SHA256: sum,
		Dest: filepath.Join(t.TempDir(), "img"), GiveUp: time.Minute,
		Now: func() time.Time { return now },
		Sleep: func(ctx context.Context, d time.Duration) error {
			now = now.Add(10 * time.Second)
			return nil
		}}
	var n int
	o.Log = func(string, ...any) { n++ }
	if err := Fetch(context.Background(), o); !errors.Is(err, ErrGiveUp) {
		t.Fatalf("%v, want ErrGiveUp", err)
	}
	if n < 5 {
		t.Errorf("%d console lines in a minute of retries, want one every few seconds", n)
	}
}

// TestFetchPythonLate downloads from python3's http.server (no ranges)
// started after the first attempts failed.
func TestFetchPythonLate(t *testing.T) {
	dir := t.TempDir()
	img, sum := image(2<<20 + 1)
	if err := os.WriteFile(filepath.Join(dir, "nix-store.squashfs"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := qemu.ServeHTTPLater(t, dir, "nix-store.squashfs", 2*time.Second)
	dest := filepath.Join(t.TempDir(), "out")
	var waits int
	o := Options{URL: srv.HostURL, Size: int64(len(img)), SHA256: sum, Dest: dest, GiveUp: time.Minute,
		Backoff: func(int) time.Duration { return 300 * time.Millisecond },
		Log: func(f string, a ...any) {
			if strings.HasPrefix(f, "waiting") {
				waits++
			}
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := Fetch(ctx, o); err != nil {
		t.Fatal(err)
	}
	if waits == 0 {
		t.Error("no waiting line before the server came up")
	}
	got, err := os.ReadFile(dest)
	if err != nil || string(got) != string(img) {
		t.Errorf("content differs (%v)", err)
	}
}

// TestFetchProgressKeepsTrying: a server that drops every transfer after
// a few bytes is retried past the give-up time as long as bytes arrive.
func TestFetchProgressKeepsTrying(t *testing.T) {
	img, sum := image(50000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var from int
		if rng := r.Header.Get("Range"); rng != "" {
			if _, err := fmt.Sscanf(rng, "bytes=%d-", &from); err != nil {
				http.Error(w, "bad range", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(img)-1, len(img)))
			w.Header().Set("Content-Length", fmt.Sprint(len(img)-from))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", fmt.Sprint(len(img)))
		}
		end := min(from+10000, len(img))
		w.Write(img[from:end]) //nolint:errcheck // the client sees the short body
		if end < len(img) {
			panic(http.ErrAbortHandler)
		}
	}))
	defer srv.Close()
	now := time.Unix(0, 0)
	o := Options{URL: srv.URL, Size: int64(len(img)), SHA256: sum, Dest: filepath.Join(t.TempDir(), "img"),
		GiveUp: 15 * time.Second, Now: func() time.Time { return now },
		Sleep: func(ctx context.Context, d time.Duration) error { now = now.Add(10 * time.Second); return nil }}
	if err := Fetch(context.Background(), o); err != nil {
		t.Fatalf("%v (after %s of fake time)", err, now.Sub(time.Unix(0, 0)))
	}
}
