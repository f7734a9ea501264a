// Package fetch downloads the store image over HTTP(S) into a file with
// retries, progress lines and a pinned sha256: the file appears at its
// destination only when its size and hash are right.
//
// A failed attempt (connection refused, a dropped transfer, a 5xx) is
// retried with backoff, resuming with a Range request when the server
// honours it and from the start otherwise, until the give-up time passes
// without a byte arriving.
// A hash or size mismatch is not retried: the server has the wrong image;
// nor is a server certificate that the pinned CAs do not vouch for.
//
// https:// verifies the server against RootCAs only (the CA bundle nbimg
// put in the initrd), never against a system bundle.
package fetch

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// Errors.
var (
	ErrMismatch = errors.New("fetch: sha256 mismatch")
	ErrSize     = errors.New("fetch: size mismatch")
	ErrGiveUp   = errors.New("fetch: gave up")
	// ErrCertificate: the https server's certificate does not verify.
	ErrCertificate = errors.New("fetch: untrusted server certificate")
	// ErrCA: the CA bundle holds no certificate.
	ErrCA = errors.New("fetch: bad CA bundle")
)

// LoadCAs reads a PEM bundle of CA certificates.
func LoadCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCA, err)
	}
	return ParseCAs(b)
}

// ParseCAs parses a PEM bundle of CA certificates; it fails unless every
// PEM block is a certificate that parses and there is at least one.
func ParseCAs(pemBytes []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := pemBytes; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: a %q PEM block, want only CERTIFICATE", ErrCA, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: %w", ErrCA, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: no PEM certificate in it", ErrCA)
	}
	return pool, nil
}

// Options describe one download.
type Options struct {
	URL    string
	Size   int64
	SHA256 string // hex
	// Dest is the final path; the download goes to Dest + ".part" first.
	Dest string
	// GiveUp is how long to keep retrying (0: forever).
	GiveUp time.Duration
	// Backoff returns the wait before retry n (0-based).
	Backoff func(n int) time.Duration
	// RootCAs are the only CAs https:// trusts (nil: the system's, which
	// stage 0 never uses; see LoadCAs).
	RootCAs *x509.CertPool
	// Client defaults to one with a 30 s header timeout that trusts
	// RootCAs.
	Client *http.Client
	// Log receives console lines (progress, retries).
	Log func(format string, args ...any)
	// Now and Sleep are the clock (tests replace them).
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

func (o *Options) defaults() {
	if o.Backoff == nil {
		o.Backoff = func(int) time.Duration { return 2 * time.Second }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Client == nil {
		o.Client = &http.Client{Transport: &http.Transport{
			Proxy:                 nil,
			ResponseHeaderTimeout: 30 * time.Second,
			DisableCompression:    true,
			TLSClientConfig:       &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12, Time: o.Now},
		}}
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	if o.Sleep == nil {
		o.Sleep = func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
				return nil
			}
		}
	}
}

// Fetch downloads o.URL to o.Dest.
func Fetch(ctx context.Context, o Options) error {
	o.defaults()
	want, err := hex.DecodeString(o.SHA256)
	if err != nil || len(want) != sha256.Size {
		return fmt.Errorf("fetch: bad pinned sha256 %q", o.SHA256)
	}
	part := o.Dest + ".part"
	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o444)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	defer func() {
		if f != nil {
			f.Close()
			os.Remove(part)
		}
	}()
	start := o.Now()
	h := sha256.New()
	var have int64
	lastNote := time.Time{}
	for attempt := 0; ; attempt++ {
		n, err := o.attempt(ctx, f, h, have)
		if n > have {
			// Progress: the give-up time counts from the last byte.
			start = o.Now()
			attempt = 0
		}
		have = n
		if err == nil {
			break
		}
		if errors.Is(err, ErrSize) || ctx.Err() != nil {
			return err
		}
		var cerr *tls.CertificateVerificationError
		var invalid x509.CertificateInvalidError
		if errors.As(err, &cerr) && errors.As(err, &invalid) && invalid.Reason == x509.Expired {
			// Boards without a battery-backed clock start near 1970.
			return fmt.Errorf("%w: %s: the server's certificate is not valid at this machine's clock (%s): set the clock (firmware or RTC), or serve the image over http:// (its sha256 is pinned all the same): %w",
				ErrCertificate, o.URL, o.Now().UTC().Format(time.RFC3339), err)
		}
		if errors.As(err, &cerr) {
			return fmt.Errorf("%w: %s: the server's certificate is not vouched for by the CA bundle in the initrd (nbimg --store-ca): %w", ErrCertificate, o.URL, err)
		}
		if o.GiveUp > 0 && o.Now().Sub(start) >= o.GiveUp {
			return fmt.Errorf("%w after %s: %s: %w", ErrGiveUp, o.Now().Sub(start).Round(time.Second), o.URL, err)
		}
		if now := o.Now(); lastNote.IsZero() || now.Sub(lastNote) >= 5*time.Second {
			o.Log("waiting for %s: %v (retrying)", o.URL, err)
			lastNote = now
		}
		if err := o.Sleep(ctx, o.Backoff(attempt)); err != nil {
			return err
		}
	}
	if got := h.Sum(nil); !equal(got, want) {
		return fmt.Errorf("%w: %s has sha256 %x, the initrd pins %s", ErrMismatch, o.URL, got, o.SHA256)
	}
	if err := f.Close(); err != nil {
		f = nil
		os.Remove(part)
		return fmt.Errorf("fetch: %w", err)
	}
	f = nil
	if err := os.Rename(part, o.Dest); err != nil {
		os.Remove(part)
		return fmt.Errorf("fetch: %w", err)
	}
	return nil
}

func equal(a, b []byte) bool { return hex.EncodeToString(a) == hex.EncodeToString(b) }

// attempt continues the download from byte have; it returns how many
// bytes are in f afterwards.
func (o *Options) attempt(ctx context.Context, f *os.File, h hash.Hash, have int64) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.URL, nil)
	if err != nil {
		return have, fmt.Errorf("fetch: %w", err)
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return have, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
	case resp.StatusCode == http.StatusOK:
		if have > 0 { // no ranges: from the start again
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return 0, fmt.Errorf("fetch: %w", err)
			}
			if err := f.Truncate(0); err != nil {
				return 0, fmt.Errorf("fetch: %w", err)
			}
			h.Reset()
			have = 0
		}
		if resp.ContentLength >= 0 && resp.ContentLength != o.Size {
			return have, fmt.Errorf("%w: %s is %d bytes, the initrd expects %d", ErrSize, o.URL, resp.ContentLength, o.Size)
		}
	default:
		return have, fmt.Errorf("%s: %s", o.URL, resp.Status)
	}
	buf := make([]byte, 1<<20)
	step := max(o.Size/10, 1)
	next := (have/step + 1) * step
	for {
		n, rerr := resp.Body.Read(buf)
		if have+int64(n) > o.Size {
			return have, fmt.Errorf("%w: %s sends more than %d bytes", ErrSize, o.URL, o.Size)
		}
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return have, fmt.Errorf("fetch: writing the image: %w", err)
			}
			h.Write(buf[:n])
			have += int64(n)
			if have >= next && have < o.Size {
				o.Log("%s: %d%% (%d of %d MiB)", o.URL, have*100/o.Size, have>>20, o.Size>>20)
				next = (have/step + 1) * step
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return have, rerr
		}
	}
	if have != o.Size {
		return have, fmt.Errorf("%s: transfer ended at %d of %d bytes", o.URL, have, o.Size)
	}
	o.Log("%s: %d MiB, done", o.URL, have>>20)
	return have, nil
}
