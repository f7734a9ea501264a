package binarycache

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// The store-path and hash helpers below are the few this package needs;
// they follow Nix's definitions (see the nixstore package for the
// project's full set).

const nix32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// hashPartLen is the length of a store path's hash part.
const hashPartLen = 32

// nix32 returns Nix's base-32 text of b: 5-bit groups numbered from the
// least significant bit of the first byte, the last group printed first.
func nix32(b []byte) string {
	n := (len(b)*8-1)/5 + 1
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

// nix32Decode parses nix32 text into size bytes.
func nix32Decode(s string, size int) ([]byte, error) {
	if len(s) != (size*8-1)/5+1 {
		return nil, fmt.Errorf("nix32 text has %d characters, want %d", len(s), (size*8-1)/5+1)
	}
	out := make([]byte, size)
	for k := 0; k < len(s); k++ {
		d := strings.IndexByte(nix32Alphabet, s[len(s)-1-k])
		if d < 0 {
			return nil, fmt.Errorf("invalid nix32 character %q", s[len(s)-1-k])
		}
		bit := k * 5
		i, j := bit/8, uint(bit%8)
		out[i] |= byte(uint(d) << j)
		hi := uint(d) >> (8 - j)
		if i+1 < size {
			out[i+1] |= byte(hi)
		} else if hi != 0 {
			return nil, fmt.Errorf("nix32 text has bits beyond %d bytes", size)
		}
	}
	return out, nil
}

// sha256Field formats a sha256 digest as narinfos carry it.
func sha256Field(sum []byte) string { return "sha256:" + nix32(sum) }

// normaliseHash accepts "sha256:" followed by 52 nix32 or 64 base16
// digits and returns the nix32 form.
func normaliseHash(s string) (string, error) {
	body, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return "", fmt.Errorf("hash %q is not sha256:<digits>", s)
	}
	switch len(body) {
	case 64:
		b, err := hex.DecodeString(body)
		if err != nil || strings.ToLower(body) != body {
			return "", fmt.Errorf("invalid base16 hash %q", s)
		}
		return sha256Field(b), nil
	case 52:
		b, err := nix32Decode(body, 32)
		if err != nil {
			return "", fmt.Errorf("hash %q: %w", s, err)
		}
		return sha256Field(b), nil
	}
	return "", fmt.Errorf("hash %q has %d digits, want 52 (nix32) or 64 (base16)", s, len(body))
}

// validStoreName says why base is not "<32 nix32 digits>-<name>", or "".
func validStoreName(base string) string {
	if len(base) < hashPartLen+2 || base[hashPartLen] != '-' {
		return "not <hash>-<name>"
	}
	for i := 0; i < hashPartLen; i++ {
		if strings.IndexByte(nix32Alphabet, base[i]) < 0 {
			return "hash part is not 32 nix32 digits"
		}
	}
	name := base[hashPartLen+1:]
	if len(name) > 211 {
		return "name is too long"
	}
	if name[0] == '.' {
		return "name starts with a dot"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("+-._?=", c) >= 0) {
			return fmt.Sprintf("name has the character %q", c)
		}
	}
	return ""
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
