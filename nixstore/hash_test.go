package nixstore

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// Known pair, from `nix-hash --type sha256 --to-base32`.
const (
	knownHex   = "8e74ebfb58e27af67bedd50c03749d5ba1e0a368a46f9f4e4f97a0231d3bb84b"
	knownNix32 = "0jxq7cfj784p9x79yvx4d2iy18avkms0636mxmxzcyp2b3xynx4f"
)

func TestNix32Known(t *testing.T) {
	b, err := hex.DecodeString(knownHex)
	testutil.NoError(t, err)
	if got := Nix32Encode(b); got != knownNix32 {
		t.Fatalf("Nix32Encode = %s, want %s", got, knownNix32)
	}
	back, err := Nix32Decode(knownNix32, 32)
	if err != nil || !bytes.Equal(back, b) {
		t.Fatalf("Nix32Decode = %x, %v", back, err)
	}
}

func TestNix32RoundTrip(t *testing.T) {
	for _, n := range []int{1, 2, 5, 16, 20, 32, 64} {
		b := make([]byte, n)
		rand.Read(b)
		s := Nix32Encode(b)
		if len(s) != Nix32EncodedLen(n) {
			t.Fatalf("len %d: text %q", n, s)
		}
		back, err := Nix32Decode(s, n)
		if err != nil || !bytes.Equal(back, b) {
			t.Fatalf("len %d: %x -> %s -> %x, %v", n, b, s, back, err)
		}
	}
}

func TestNix32DecodeErrors(t *testing.T) {
	for _, s := range []string{
		strings.Repeat("0", 51),       // short
		"e" + strings.Repeat("0", 51), // e is not a digit
		"z" + strings.Repeat("0", 51), // 260 bits: the top bits overflow
		strings.Repeat("0", 51) + "u", // u is not a digit
	} {
		if _, err := Nix32Decode(s, 32); err == nil {
			t.Errorf("Nix32Decode(%q) succeeded", s)
		}
	}
}

// TestNix32AgainstNix checks the encoding against nix-hash on random digests.
func TestNix32AgainstNix(t *testing.T) {
	nixHash := testutil.Tool(t, "nix-hash", "nix-bin")
	var hexes, want []string
	for range 20 {
		b := make([]byte, 32)
		rand.Read(b)
		hexes = append(hexes, hex.EncodeToString(b))
		want = append(want, Nix32Encode(b))
	}
	out, err := exec.Command(nixHash, append([]string{"--type", "sha256", "--to-base32"}, hexes...)...).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(out))
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("nix-hash --to-base32:\n%s\nours:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// And back: nix-hash --to-base16 of our text.
	out, err = exec.Command(nixHash, append([]string{"--type", "sha256", "--to-base16"}, want...)...).Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(strings.Fields(string(out)), " ") != strings.Join(hexes, " ") {
		t.Fatalf("nix-hash --to-base16 does not give back the digests")
	}
}

func TestParseNarHashForms(t *testing.T) {
	b, err := hex.DecodeString(knownHex)
	testutil.NoError(t, err)
	sri := "sha256-" + base64.StdEncoding.EncodeToString(b)
	for _, in := range []string{knownHex, "sha256:" + knownHex, knownNix32, "sha256:" + knownNix32, sri} {
		got, err := NormaliseNarHash(in)
		if err != nil || got != "sha256:"+knownNix32 {
			t.Errorf("NormaliseNarHash(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "sha256:", "md5:" + knownHex, strings.ToUpper(knownHex), "sha256-abc", knownHex[:63], "sha512-" + base64.StdEncoding.EncodeToString(b)} {
		if _, err := NormaliseNarHash(in); err == nil {
			t.Errorf("NormaliseNarHash(%q) succeeded", in)
		}
	}
}

// FuzzNix32 checks that decoding inverts encoding, and that any text that
// decodes encodes back to itself (each hash has exactly one nix32 text).
func FuzzNix32(f *testing.F) {
	f.Add([]byte{0x8e, 0x74}, knownNix32)
	f.Add([]byte{}, "")
	f.Fuzz(func(t *testing.T, b []byte, s string) {
		back, err := Nix32Decode(Nix32Encode(b), len(b))
		if err != nil || !bytes.Equal(back, b) {
			t.Fatalf("%x: decode(encode) = %x, %v", b, back, err)
		}
		for _, size := range []int{20, 32} {
			if d, err := Nix32Decode(s, size); err == nil && Nix32Encode(d) != s {
				t.Fatalf("%q decodes to %x, which encodes to %q", s, d, Nix32Encode(d))
			}
		}
		if h, err := NormaliseNarHash(s); err == nil {
			if h2, err := NormaliseNarHash(h); err != nil || h2 != h {
				t.Fatalf("%q normalises to %q, then %q, %v", s, h, h2, err)
			}
		}
	})
}
