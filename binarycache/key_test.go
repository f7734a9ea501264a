package binarycache_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/binarycache"
)

// testKey is a fixed key: seed bytes 0..31.
func testKey(t testing.TB, name string) binarycache.SecretKey {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i + len(name))
	}
	k, err := binarycache.ParseSecretKey(name + ":" + base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(seed)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyRoundTrip(t *testing.T) {
	k, err := binarycache.GenerateKey("cache.test-1", bytes.NewReader(make([]byte, 64)))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := binarycache.ParseSecretKey(k.String() + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if k2.Name != k.Name || !k2.Key.Equal(k.Key) {
		t.Fatalf("secret key round trip: %v != %v", k2, k)
	}
	pub, err := binarycache.ParsePublicKey(k.Public().String())
	if err != nil {
		t.Fatal(err)
	}
	if pub.Name != "cache.test-1" || !pub.Key.Equal(k.Key.Public()) {
		t.Fatalf("public key round trip: %v", pub)
	}
	if len(strings.SplitN(pub.String(), ":", 2)[1]) != 44 {
		t.Fatalf("public key %q: want 44 base64 characters", pub)
	}
}

func TestParseKeyErrors(t *testing.T) {
	good := testKey(t, "k")
	seed := good.Key.Seed()
	mismatched := append(append([]byte{}, seed...), make([]byte, 32)...)
	for _, tc := range []struct{ name, secret string }{
		{"no colon", base64.StdEncoding.EncodeToString(good.Key)},
		{"empty name", ":" + base64.StdEncoding.EncodeToString(good.Key)},
		{"space in name", "a b:" + base64.StdEncoding.EncodeToString(good.Key)},
		{"bad base64", "k:@@@@"},
		{"public key given", good.Public().String()},
		{"halves differ", "k:" + base64.StdEncoding.EncodeToString(mismatched)},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := binarycache.ParseSecretKey(tc.secret)
			if !errors.Is(err, binarycache.ErrKeyFormat) {
				t.Fatalf("ParseSecretKey(%q) = %v, want ErrKeyFormat", tc.secret, err)
			}
		})
	}
	if _, err := binarycache.ParsePublicKey(good.String()); !errors.Is(err, binarycache.ErrKeyFormat) {
		t.Fatalf("a secret key parsed as a public key: %v", err)
	}
}

func TestSignVerify(t *testing.T) {
	k := testKey(t, "cache-1")
	other := testKey(t, "cache-2")
	fp := binarycache.Fingerprint("/nix/store/00000000000000000000000000000000-a", "sha256:"+strings.Repeat("0", 52), 120, nil)
	sig := k.Sign(fp)
	if !strings.HasPrefix(sig, "cache-1:") {
		t.Fatalf("signature %q does not start with the key name", sig)
	}
	if !k.Public().Verify(fp, sig) {
		t.Fatal("own signature does not verify")
	}
	if k.Public().Verify(fp+"x", sig) {
		t.Fatal("signature verifies another message")
	}
	if other.Public().Verify(fp, sig) {
		t.Fatal("another key verifies the signature")
	}
	renamed := binarycache.PublicKey{Name: "cache-2", Key: k.Public().Key}
	if renamed.Verify(fp, sig) {
		t.Fatal("a signature under another key name verifies")
	}
}

func TestFingerprint(t *testing.T) {
	h := "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
	got := binarycache.Fingerprint("/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhw1r-curl-7.82.0-bin", h, 196040,
		[]string{"/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhw1r-curl-7.82.0-bin", "/nix/store/0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0"})
	want := "1;/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhw1r-curl-7.82.0-bin;" + h + ";196040;" +
		"/nix/store/0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0,/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhw1r-curl-7.82.0-bin"
	if got != want {
		t.Fatalf("fingerprint\n got %s\nwant %s", got, want)
	}
	if got := binarycache.Fingerprint("/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhw1r-x", h, 1, nil); !strings.HasSuffix(got, ";1;") {
		t.Fatalf("fingerprint without references %q does not end in ;1;", got)
	}
}
