package nixstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// PathInfo is what the Nix database records about one store path.
type PathInfo struct {
	Path       string   // store path, e.g. /nix/store/<hash>-name
	NarHash    string   // sha256 of the path's NAR serialisation, "sha256:<nix32>"
	NarSize    uint64   // length of the NAR serialisation
	Deriver    string   // store path of the .drv that built it, or ""
	References []string // store paths it refers to, sorted (may include itself)
}

// Closure is a set of store paths closed under references, with where to
// read them on this machine.
type Closure struct {
	StoreDir  string     // store directory the paths are in, "/nix/store"
	StoreRoot string     // host directory the store directory is under; "" is /
	Paths     []PathInfo // sorted by Path
	Toplevel  *Toplevel  // the NixOS system, nil unless one was given
}

// HostPath returns where a path in the store namespace (a store path or a
// file in one) is on this machine.
func (c *Closure) HostPath(storePath string) string {
	if c.StoreRoot == "" {
		return storePath
	}
	return filepath.Join(c.StoreRoot, storePath)
}

// Registration returns the closure's registration file exactly as nixpkgs'
// closureInfo writes it (see WriteRegistration).
func (c *Closure) Registration() []byte {
	var b bytes.Buffer
	if err := WriteRegistration(&b, c.Paths); err != nil {
		// Paths from Load always have normalised hashes; a hand-built
		// Closure with a malformed hash gets the hash as given.
		b.Reset()
		for _, p := range c.Paths {
			fmt.Fprintf(&b, "%s\n%s\n%d\n\n%d\n%s", p.Path, p.NarHash, p.NarSize, len(p.References), joinLines(p.References))
		}
	}
	return b.Bytes()
}

// StorePaths returns closureInfo's store-paths file: one path a line.
func (c *Closure) StorePaths() []byte {
	var b bytes.Buffer
	writeStorePaths(&b, c.Paths)
	return b.Bytes()
}

func joinLines(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return strings.Join(s, "\n") + "\n"
}

// NarSize returns the total NAR size of the closure, as closureInfo's
// total-nar-size file states it.
func (c *Closure) NarSize() uint64 {
	var n uint64
	for _, p := range c.Paths {
		n += p.NarSize
	}
	return n
}

// Lookup returns the PathInfo of a store path in the closure.
func (c *Closure) Lookup(storePath string) (PathInfo, bool) {
	lo, hi := 0, len(c.Paths)
	for lo < hi {
		m := (lo + hi) / 2
		switch {
		case c.Paths[m].Path == storePath:
			return c.Paths[m], true
		case c.Paths[m].Path < storePath:
			lo = m + 1
		default:
			hi = m
		}
	}
	return PathInfo{}, false
}

// Input says where a closure comes from; it mirrors the --closure,
// --toplevel and --store-root flags.
type Input struct {
	Closure   string // closureInfo directory or registration file; "" computes it
	Toplevel  string // NixOS system store path or a symlink to one; may be ""
	StoreRoot string // host directory holding nix/store; "" is /
}

// ErrNoInput is returned by Load when neither a closure nor a toplevel is
// given.
var ErrNoInput = errors.New("nixstore: no closure given: pass --closure (a closureInfo directory or registration file) or --toplevel (a NixOS system)")

// ErrEmptyRegistration is wrapped by the error about a registration file
// that lists no store path (a closure is never empty).
var ErrEmptyRegistration = errors.New("nixstore: the registration lists no store paths")

// ErrMissingPath is wrapped by errors about a listed store path that is not
// on disk.
var ErrMissingPath = errors.New("nixstore: store path missing on disk")

// nixStoreProgram is the nix-store executable Load runs to compute a closure
// when no closureInfo is given; "" always uses the scanner. Tests change it.
var nixStoreProgram = "nix-store"

// Load reads a closure as the flags describe it:
//   - with in.Closure, from a closureInfo directory or a registration file;
//   - otherwise from in.Toplevel's closure, queried from the Nix database with
//     nix-store when it is installed and in.StoreRoot is empty, or else
//     computed by scanning the store (see Scan);
//
// and with in.Toplevel, reads the NixOS system too. Every path of the closure
// must exist under in.StoreRoot.
func Load(ctx context.Context, in Input) (*Closure, error) {
	root, err := cleanStoreRoot(in.StoreRoot)
	if err != nil {
		return nil, err
	}
	var (
		c     *Closure
		lines map[string]int
		name  string
	)
	switch {
	case in.Closure != "":
		c, lines, name, err = loadClosureInfo(in.Closure, root)
		if err != nil {
			return nil, err
		}
	case in.Toplevel != "":
		top, err := ResolveStorePath(in.Toplevel, DefaultStoreDir, root)
		if err != nil {
			return nil, fmt.Errorf("toplevel: %w", err)
		}
		c, err = queryClosure(ctx, []string{top}, root)
		if err != nil {
			return nil, err
		}
	default:
		return nil, ErrNoInput
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, p := range c.Paths {
		if _, err := os.Lstat(c.HostPath(p.Path)); err != nil {
			e := fmt.Errorf("%w: %s (looked for %s)", ErrMissingPath, p.Path, c.HostPath(p.Path))
			if errors.Is(err, fs.ErrNotExist) {
				if name != "" {
					return nil, &RegistrationError{File: name, Line: lines[p.Path], Err: e}
				}
				return nil, e
			}
			return nil, fmt.Errorf("store path %s: %w", p.Path, err)
		}
	}
	if in.Toplevel != "" {
		t, err := ReadToplevel(in.Toplevel, root)
		if err != nil {
			return nil, err
		}
		if _, ok := c.Lookup(t.Path); !ok {
			// A toplevel given as a store path that is a symlink to the
			// system: a closure of the system itself will do.
			if target, err := resolveLogical(t.Path, root); err == nil && target != t.Path {
				if t2, err := ReadToplevel(target, root); err == nil {
					if _, ok := c.Lookup(t2.Path); ok {
						t = t2
					}
				}
			}
		}
		if _, ok := c.Lookup(t.Path); !ok {
			return nil, fmt.Errorf("toplevel %s is not in the closure %s: pass the closureInfo of this system", t.Path, in.Closure)
		}
		// The booted system runs init from the image: its store path
		// must be there, whatever the closure file says.
		if sp := storePathOf(t.Init, c.StoreDir); sp == "" {
			return nil, fmt.Errorf("toplevel %s: init leads to %s, outside the store", t.Path, t.Init)
		} else if _, ok := c.Lookup(sp); !ok {
			return nil, fmt.Errorf("toplevel %s: its init %s is not in the closure %s: the booted system would not find it", t.Path, sp, in.Closure)
		}
		c.Toplevel = t
	}
	return c, nil
}

func cleanStoreRoot(root string) (string, error) {
	if root == "" {
		return "", nil
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("store root %s: %w", root, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("store root: %w", err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("store root %s is not a directory", root)
	}
	if abs == "/" {
		return "", nil
	}
	return abs, nil
}

// loadClosureInfo reads a closureInfo directory or a bare registration file.
// It returns the line each path starts on and the file name for errors.
func loadClosureInfo(p, root string) (*Closure, map[string]int, string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, nil, "", fmt.Errorf("closure: %w", err)
	}
	regFile := p
	if st.IsDir() {
		regFile = filepath.Join(p, "registration")
	}
	f, err := os.Open(regFile)
	if err != nil {
		if st.IsDir() && errors.Is(err, fs.ErrNotExist) {
			return nil, nil, "", fmt.Errorf("closure %s: no registration file: is it a closureInfo directory?", p)
		}
		return nil, nil, "", fmt.Errorf("closure: %w", err)
	}
	defer f.Close()
	entries, err := parseRegistration(f, regFile)
	if err != nil {
		return nil, nil, "", err
	}
	if len(entries) == 0 {
		return nil, nil, "", &RegistrationError{File: regFile, Err: ErrEmptyRegistration}
	}
	c := &Closure{StoreDir: DefaultStoreDir, StoreRoot: root, Paths: make([]PathInfo, len(entries))}
	lines := make(map[string]int, len(entries))
	for i, e := range entries {
		c.Paths[i] = e.info
		slices.Sort(c.Paths[i].References)
		lines[e.info.Path] = e.line
	}
	sortPaths(c.Paths)
	if len(c.Paths) > 0 {
		c.StoreDir = filepath.Dir(c.Paths[0].Path)
	}
	if st.IsDir() {
		if err := checkStorePaths(filepath.Join(p, "store-paths"), c); err != nil {
			return nil, nil, "", err
		}
		if err := checkTotalNarSize(filepath.Join(p, "total-nar-size"), c); err != nil {
			return nil, nil, "", err
		}
	}
	return c, lines, regFile, nil
}

// checkTotalNarSize checks a closureInfo's total-nar-size file, when present,
// against the registration.
func checkTotalNarSize(name string, c *Closure) error {
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("closure: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return &RegistrationError{File: name, Line: 1, Err: fmt.Errorf("%q is not a decimal number", strings.TrimSpace(string(data)))}
	}
	if n != c.NarSize() {
		return &RegistrationError{File: name, Line: 1, Err: fmt.Errorf("total %d differs from the registration's %d: the directory is not one closureInfo", n, c.NarSize())}
	}
	return nil
}

// checkStorePaths checks that a closureInfo's store-paths file, when
// present, lists the same paths as its registration.
func checkStorePaths(name string, c *Closure) error {
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("closure: %w", err)
	}
	listed := map[string]int{}
	for i, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if l == "" && len(data) <= 1 {
			continue
		}
		if _, ok := c.Lookup(l); !ok {
			return &RegistrationError{File: name, Line: i + 1, Err: fmt.Errorf("%s is not in the registration file", l)}
		}
		listed[l] = i + 1
	}
	for _, p := range c.Paths {
		if _, ok := listed[p.Path]; !ok {
			return &RegistrationError{File: name, Err: fmt.Errorf("%s is in the registration file but not listed here", p.Path)}
		}
	}
	return nil
}

// SubClosure returns the part of c that the store path root needs: root
// and everything it refers to, directly or not, per c's references. The
// result shares c's store and has no toplevel.
func (c *Closure) SubClosure(root string) (*Closure, error) {
	if _, ok := c.Lookup(root); !ok {
		return nil, fmt.Errorf("%s is not in the closure", root)
	}
	seen := map[string]bool{root: true}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		info, ok := c.Lookup(p)
		if !ok {
			return nil, fmt.Errorf("closure is not closed: %s refers to a path it does not list", p)
		}
		for _, r := range info.References {
			if !seen[r] {
				seen[r] = true
				queue = append(queue, r)
			}
		}
	}
	sub := &Closure{StoreDir: c.StoreDir, StoreRoot: c.StoreRoot}
	for _, p := range c.Paths {
		if seen[p.Path] {
			sub.Paths = append(sub.Paths, p)
		}
	}
	if len(sub.Paths) != len(seen) {
		for p := range seen {
			if _, ok := c.Lookup(p); !ok {
				return nil, fmt.Errorf("closure is not closed: %s is referred to but not listed", p)
			}
		}
	}
	return sub, nil
}
