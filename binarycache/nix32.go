package binarycache

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nbimg/nbimg/nixstore"
)

// hashPartLen is the length of a store path's hash part.
const hashPartLen = 32

// sha256Field formats a sha256 digest as narinfos carry it.
func sha256Field(sum []byte) string { return nixstore.FormatNarHash(sum) }

// normaliseHash accepts a sha256 hash in any form Nix writes (base16,
// nix32, SRI) and returns "sha256:<nix32>".
func normaliseHash(s string) (string, error) { return nixstore.NormaliseNarHash(s) }

// validStoreName says why base is not "<32 nix32 digits>-<name>" with a
// name Nix accepts, or "".
func validStoreName(base string) string {
	if len(base) < hashPartLen+2 || base[hashPartLen] != '-' {
		return "not <hash>-<name>"
	}
	if _, err := nixstore.Nix32Decode(base[:hashPartLen], 20); err != nil {
		return "hash part is not 32 nix32 digits"
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
