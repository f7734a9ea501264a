package nixstore

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// nix32Alphabet is the digit set of Nix's base-32 encoding: the digits and
// lowercase letters without e, o, u and t.
const nix32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// nix32Index maps a byte to its nix32 digit value, or -1.
var nix32Index = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(nix32Alphabet); i++ {
		t[nix32Alphabet[i]] = int8(i)
	}
	return t
}()

// Nix32EncodedLen is the length of the nix32 text of n bytes.
func Nix32EncodedLen(n int) int {
	if n == 0 {
		return 0
	}
	return (n*8-1)/5 + 1
}

// Nix32Encode returns Nix's base-32 text of b. Nix numbers the 5-bit groups
// from the least significant bit of the first byte and prints the last group
// first, so the text is not RFC 4648 base32 of any byte order.
func Nix32Encode(b []byte) string {
	n := Nix32EncodedLen(len(b))
	out := make([]byte, n)
	for k := 0; k < n; k++ {
		bit := k * 5
		i, j := bit/8, uint(bit%8)
		v := uint(b[i]) >> j
		if i+1 < len(b) {
			v |= uint(b[i+1]) << (8 - j)
		}
		out[n-1-k] = nix32Alphabet[v&0x1f]
	}
	return string(out)
}

// Nix32Decode parses nix32 text into size bytes.
func Nix32Decode(s string, size int) ([]byte, error) {
	if len(s) != Nix32EncodedLen(size) {
		return nil, fmt.Errorf("nix32 text has %d characters, want %d for %d bytes", len(s), Nix32EncodedLen(size), size)
	}
	out := make([]byte, size)
	for k := 0; k < len(s); k++ {
		c := s[len(s)-1-k]
		d := nix32Index[c]
		if d < 0 {
			return nil, fmt.Errorf("invalid nix32 character %q", c)
		}
		bit := k * 5
		i, j := bit/8, uint(bit%8)
		out[i] |= byte(uint(d) << j)
		hi := uint(d) >> (8 - j)
		if i+1 < size {
			out[i+1] |= byte(hi)
		} else if hi != 0 {
			return nil, errors.New("nix32 text has bits beyond the hash length")
		}
	}
	return out, nil
}

// isNix32 reports whether every byte of s is a nix32 digit.
func isNix32(s string) bool {
	for i := 0; i < len(s); i++ {
		if nix32Index[s[i]] < 0 {
			return false
		}
	}
	return true
}

const sha256Size = 32

// FormatNarHash formats a sha256 digest as closureInfo does: "sha256:<nix32>".
func FormatNarHash(sum []byte) string {
	return "sha256:" + Nix32Encode(sum)
}

// ParseNarHash accepts a sha256 NAR hash as Nix writes it anywhere:
// base16 or nix32 with or without the "sha256:" prefix, and SRI
// ("sha256-<base64>"). It returns the 32-byte digest.
func ParseNarHash(s string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(s, "sha256-"); ok {
		b, err := base64.StdEncoding.Strict().DecodeString(rest)
		if err != nil || len(b) != sha256Size {
			return nil, fmt.Errorf("invalid SRI sha256 hash %q", s)
		}
		return b, nil
	}
	body := s
	if algo, rest, ok := strings.Cut(s, ":"); ok {
		if algo != "sha256" {
			return nil, fmt.Errorf("unsupported hash type %q in %q: NAR hashes are sha256", algo, s)
		}
		body = rest
	}
	switch len(body) {
	case hex.EncodedLen(sha256Size):
		b, err := hex.DecodeString(body)
		if err != nil || strings.ToLower(body) != body {
			return nil, fmt.Errorf("invalid base16 sha256 hash %q", s)
		}
		return b, nil
	case Nix32EncodedLen(sha256Size):
		b, err := Nix32Decode(body, sha256Size)
		if err != nil {
			return nil, fmt.Errorf("invalid nix32 sha256 hash %q: %w", s, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("invalid sha256 hash %q: want 64 base16, 52 nix32 or SRI base64 digits", s)
}

// NormaliseNarHash rewrites any accepted hash form as "sha256:<nix32>".
func NormaliseNarHash(s string) (string, error) {
	b, err := ParseNarHash(s)
	if err != nil {
		return "", err
	}
	return FormatNarHash(b), nil
}
