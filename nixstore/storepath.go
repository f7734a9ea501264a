package nixstore

import (
	"fmt"
	"path"
	"strings"
)

// DefaultStoreDir is the store directory every NixOS system uses.
const DefaultStoreDir = "/nix/store"

// hashPartLen is the length of the hash part of a store path's base name.
const hashPartLen = 32

// maxNameLen is the longest name part Nix accepts after "<hash>-".
const maxNameLen = 211

// validStoreName reports why base is not a valid store path base name
// ("<32 nix32 digits>-<name>"), or "" when it is.
func validStoreName(base string) string {
	if len(base) < hashPartLen+2 || base[hashPartLen] != '-' {
		return "base name is not <hash>-<name>"
	}
	if !isNix32(base[:hashPartLen]) {
		return "hash part is not 32 nix32 digits"
	}
	name := base[hashPartLen+1:]
	if len(name) > maxNameLen {
		return "name is too long"
	}
	if name[0] == '.' {
		return "name starts with a dot"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("+-._?=", c) >= 0:
		default:
			return fmt.Sprintf("name has the character %q", c)
		}
	}
	return ""
}

// splitStorePath checks that p is a store path (storeDir/<hash>-<name>, no
// further components) and returns its store directory.
func splitStorePath(p string) (storeDir string, err error) {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return "", fmt.Errorf("%q is not an absolute, clean store path", p)
	}
	dir, base := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		return "", fmt.Errorf("%q is not in a store directory", p)
	}
	if why := validStoreName(base); why != "" {
		return "", fmt.Errorf("%q is not a store path: %s", p, why)
	}
	return dir, nil
}

// hashPart returns the 32-character hash part of a store path.
func hashPart(storePath string) string {
	return path.Base(storePath)[:hashPartLen]
}

// storePathOf returns the store path that p (a path in the store namespace)
// lies in, or "" when p is not below storeDir.
func storePathOf(p, storeDir string) string {
	rest, ok := strings.CutPrefix(path.Clean(p), storeDir+"/")
	if !ok || rest == "" {
		return ""
	}
	base, _, _ := strings.Cut(rest, "/")
	if validStoreName(base) != "" {
		return ""
	}
	return storeDir + "/" + base
}
