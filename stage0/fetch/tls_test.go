package fetch

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/qemu"
)

// TestFetchHTTPS downloads over https from a loopback server whose
// certificate a throwaway CA issued: it works with that CA pinned, fails
// at once (no retries) with another CA or with the system's CAs, and the
// sha256 pin still refuses a changed image.
func TestFetchHTTPS(t *testing.T) {
	img, sum := image(2<<20 + 11)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nix-store.squashfs"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	ca := qemu.NewTestCA(t)
	srv := qemu.ServeHTTPS(t, dir, "nix-store.squashfs", ca)
	pool, err := ParseCAs(ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ParseCAs(qemu.NewTestCA(t).CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	opts := func(sha string) Options {
		o := Options{URL: srv.HostURL, Size: int64(len(img)), SHA256: sha,
			Dest: filepath.Join(t.TempDir(), "nix-store.squashfs"), GiveUp: time.Minute}
		fast(&o)
		return o
	}

	o := opts(sum)
	o.RootCAs = pool
	if err := Fetch(context.Background(), o); err != nil {
		t.Fatalf("with the server's CA: %v", err)
	}
	got, err := os.ReadFile(o.Dest)
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("downloaded image differs (%v)", err)
	}

	for name, roots := range map[string]*Options{"another CA": {RootCAs: other}, "system CAs": {}} {
		o := opts(sum)
		o.RootCAs = roots.RootCAs
		start := time.Now()
		err := Fetch(context.Background(), o)
		if !errors.Is(err, ErrCertificate) {
			t.Errorf("%s: %v, want %v", name, err, ErrCertificate)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("%s: refused after %s: a certificate failure must not be retried", name, d)
		}
		if _, err := os.Stat(o.Dest); !os.IsNotExist(err) {
			t.Errorf("%s: %s exists (%v)", name, o.Dest, err)
		}
	}

	// A board without a battery-backed clock, near 1970: refused at once,
	// naming the clock.
	o = opts(sum)
	o.RootCAs = pool
	o.Now = func() time.Time { return time.Unix(86400, 0) }
	err = Fetch(context.Background(), o)
	if !errors.Is(err, ErrCertificate) || !strings.Contains(err.Error(), "not valid at this machine's clock (1970-01-02T00:00:00Z)") {
		t.Errorf("with the clock at 1970: %v, want %v naming the clock", err, ErrCertificate)
	}

	bad := append([]byte(nil), img...)
	bad[len(bad)/3] ^= 4
	if err := os.WriteFile(filepath.Join(dir, "nix-store.squashfs"), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	o = opts(sum)
	o.RootCAs = pool
	if err := Fetch(context.Background(), o); !errors.Is(err, ErrMismatch) {
		t.Errorf("changed image over https: %v, want %v", err, ErrMismatch)
	}
}

func TestParseCAs(t *testing.T) {
	ca := qemu.NewTestCA(t)
	two := append(append([]byte(nil), ca.CertPEM...), qemu.NewTestCA(t).CertPEM...)
	if _, err := ParseCAs(two); err != nil {
		t.Errorf("two CAs: %v", err)
	}
	for name, b := range map[string][]byte{
		"empty":       nil,
		"not PEM":     []byte("hello"),
		"private key": []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
		"bad DER":     []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
	} {
		if _, err := ParseCAs(b); !errors.Is(err, ErrCA) {
			t.Errorf("%s: %v, want %v", name, err, ErrCA)
		}
	}
	if _, err := LoadCAs(filepath.Join(t.TempDir(), "missing.pem")); !errors.Is(err, ErrCA) {
		t.Errorf("missing file: %v", err)
	}
}
