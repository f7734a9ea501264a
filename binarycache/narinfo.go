package binarycache

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// NarInfo is one <hashpart>.narinfo file.
type NarInfo struct {
	StorePath   string   // full store path
	URL         string   // the NAR file, relative to the cache: nar/<filehash>.nar.xz
	Compression string   // xz, zstd, none (Nix reads a missing line as bzip2)
	FileHash    string   // sha256:nix32 of the file at URL
	FileSize    uint64   // its size
	NarHash     string   // sha256:nix32 of the NAR
	NarSize     uint64   // its size
	References  []string // base names (<hash>-<name>), sorted
	Deriver     string   // base name of the .drv, or ""
	System      string   // e.g. x86_64-linux, or ""
	Sigs        []string // Sig values, "name:base64"
	CA          string   // content address, or ""
}

// ErrNarInfo is wrapped by every error about a malformed narinfo.
var ErrNarInfo = errors.New("binarycache: malformed narinfo")

// ParseNarInfo parses a narinfo as Nix does: "Key: value" lines, each
// ending in a newline; unknown keys are skipped. StorePath, URL, NarHash
// and a non-zero NarSize are required, and Compression defaults to bzip2.
// Store paths, references and the deriver must be store path names in
// storeDir. Hashes must be sha256 in Nix's nix32 form (base16 is accepted
// and converted).
func ParseNarInfo(data []byte, storeDir string) (*NarInfo, error) {
	n := &NarInfo{}
	var haveRefs, haveCompression bool
	rest := data
	for line := 1; len(rest) > 0; line++ {
		eol := bytes.IndexByte(rest, '\n')
		if eol < 0 {
			return nil, fmt.Errorf("%w: line %d has no newline", ErrNarInfo, line)
		}
		l := string(rest[:eol])
		rest = rest[eol+1:]
		key, value, ok := strings.Cut(l, ": ")
		if !ok {
			return nil, fmt.Errorf("%w: line %d is not \"Key: value\"", ErrNarInfo, line)
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: line %d: %s: %s", ErrNarInfo, line, key, fmt.Sprintf(format, args...))
		}
		var err error
		switch key {
		case "StorePath":
			if n.StorePath != "" {
				return nil, bad("given twice")
			}
			if err := checkStorePath(value, storeDir); err != nil {
				return nil, bad("%v", err)
			}
			n.StorePath = value
		case "URL":
			n.URL = value
		case "Compression":
			n.Compression, haveCompression = value, true
		case "FileHash":
			if n.FileHash, err = normaliseHash(value); err != nil {
				return nil, bad("%v", err)
			}
		case "FileSize":
			if n.FileSize, err = strconv.ParseUint(value, 10, 64); err != nil {
				return nil, bad("not a number")
			}
		case "NarHash":
			if n.NarHash, err = normaliseHash(value); err != nil {
				return nil, bad("%v", err)
			}
		case "NarSize":
			if n.NarSize, err = strconv.ParseUint(value, 10, 64); err != nil {
				return nil, bad("not a number")
			}
		case "References":
			if haveRefs {
				return nil, bad("given twice")
			}
			haveRefs = true
			for _, r := range strings.Fields(value) {
				if why := validStoreName(r); why != "" {
					return nil, bad("%q: %s", r, why)
				}
				n.References = append(n.References, r)
			}
			slices.Sort(n.References)
			n.References = slices.Compact(n.References)
		case "Deriver":
			if value != "unknown-deriver" {
				if why := validStoreName(value); why != "" {
					return nil, bad("%q: %s", value, why)
				}
				n.Deriver = value
			}
		case "System":
			n.System = value
		case "Sig":
			n.Sigs = append(n.Sigs, value)
		case "CA":
			n.CA = value
		}
	}
	if !haveCompression {
		n.Compression = "bzip2"
	}
	switch {
	case n.StorePath == "":
		return nil, fmt.Errorf("%w: no StorePath", ErrNarInfo)
	case n.URL == "":
		return nil, fmt.Errorf("%w: no URL", ErrNarInfo)
	case n.NarHash == "":
		return nil, fmt.Errorf("%w: no NarHash", ErrNarInfo)
	case n.NarSize == 0:
		return nil, fmt.Errorf("%w: no NarSize", ErrNarInfo)
	}
	return n, nil
}

// Bytes returns the narinfo in the order `nix copy` writes it.
func (n *NarInfo) Bytes() []byte {
	var b bytes.Buffer
	b.WriteString("StorePath: " + n.StorePath + "\n")
	b.WriteString("URL: " + n.URL + "\n")
	if n.Compression != "" {
		b.WriteString("Compression: " + n.Compression + "\n")
	}
	if n.FileHash != "" {
		b.WriteString("FileHash: " + n.FileHash + "\n")
		b.WriteString("FileSize: " + strconv.FormatUint(n.FileSize, 10) + "\n")
	}
	b.WriteString("NarHash: " + n.NarHash + "\n")
	b.WriteString("NarSize: " + strconv.FormatUint(n.NarSize, 10) + "\n")
	b.WriteString("References: " + strings.Join(n.References, " ") + "\n")
	if n.Deriver != "" {
		b.WriteString("Deriver: " + n.Deriver + "\n")
	}
	if n.System != "" {
		b.WriteString("System: " + n.System + "\n")
	}
	for _, s := range n.Sigs {
		b.WriteString("Sig: " + s + "\n")
	}
	if n.CA != "" {
		b.WriteString("CA: " + n.CA + "\n")
	}
	return b.Bytes()
}

// Fingerprint returns the text Nix signs for this path.
func (n *NarInfo) Fingerprint() string {
	dir := path.Dir(n.StorePath)
	refs := make([]string, len(n.References))
	for i, r := range n.References {
		refs[i] = dir + "/" + r
	}
	return Fingerprint(n.StorePath, n.NarHash, n.NarSize, refs)
}

// Sign adds k's signature, replacing an earlier one by a key of the same
// name.
func (n *NarInfo) Sign(k SecretKey) {
	sig := k.Sign(n.Fingerprint())
	n.Sigs = slices.DeleteFunc(n.Sigs, func(s string) bool { return strings.HasPrefix(s, k.Name+":") })
	n.Sigs = append(n.Sigs, sig)
	slices.Sort(n.Sigs)
}

// SignedBy reports whether a Sig line is k's valid signature.
func (n *NarInfo) SignedBy(k PublicKey) bool {
	fp := n.Fingerprint()
	for _, s := range n.Sigs {
		if k.Verify(fp, s) {
			return true
		}
	}
	return false
}

// HashPart returns the hash part of the store path, the narinfo's name
// without ".narinfo".
func (n *NarInfo) HashPart() string {
	return path.Base(n.StorePath)[:hashPartLen]
}

// checkStorePath checks that p is storeDir/<hash>-<name>.
func checkStorePath(p, storeDir string) error {
	dir, base := path.Split(p)
	if dir != storeDir+"/" {
		return fmt.Errorf("%q is not in the store directory %s", p, storeDir)
	}
	if why := validStoreName(base); why != "" {
		return fmt.Errorf("%q is not a store path: %s", p, why)
	}
	return nil
}

// CacheInfo is the nix-cache-info file.
type CacheInfo struct {
	StoreDir      string
	WantMassQuery bool
	Priority      int // lower is tried first; cache.nixos.org has 40; 0 leaves the line out
}

// Bytes returns the nix-cache-info text.
func (c CacheInfo) Bytes() []byte {
	s := "StoreDir: " + c.StoreDir + "\n"
	if c.WantMassQuery {
		s += "WantMassQuery: 1\n"
	}
	if c.Priority != 0 {
		s += "Priority: " + strconv.Itoa(c.Priority) + "\n"
	}
	return []byte(s)
}

// ParseCacheInfo reads a nix-cache-info file. Like Nix it ignores unknown
// keys and lines without a colon.
func ParseCacheInfo(data []byte) (CacheInfo, error) {
	var c CacheInfo
	for _, l := range strings.Split(string(data), "\n") {
		key, value, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch strings.TrimSpace(key) {
		case "StoreDir":
			c.StoreDir = value
		case "WantMassQuery":
			c.WantMassQuery = value == "1"
		case "Priority":
			p, err := strconv.Atoi(value)
			if err != nil {
				return CacheInfo{}, fmt.Errorf("nix-cache-info: Priority %q is not a number", value)
			}
			c.Priority = p
		}
	}
	if c.StoreDir == "" {
		return CacheInfo{}, errors.New("nix-cache-info: no StoreDir")
	}
	return c, nil
}
