package nixstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// RegistrationError reports a problem in a registration file (or a
// closureInfo directory) at a line, counted from 1; Line is 0 when the
// problem is not at one line.
type RegistrationError struct {
	File string
	Line int
	Err  error
}

func (e *RegistrationError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *RegistrationError) Unwrap() error { return e.Err }

// ErrOutsideClosure is wrapped by errors about a reference to a path
// that the closure does not list.
var ErrOutsideClosure = errors.New("nixstore: reference outside the closure")

// regEntry is a parsed registration record with the line it started on.
type regEntry struct {
	info     PathInfo
	line     int
	refLines []int
}

// maxRegLine bounds one registration line; store paths are far shorter.
const maxRegLine = 64 << 10

type lineReader struct {
	r    *bufio.Reader
	name string
	line int
}

// next returns the next line without its newline; io.EOF when the input is
// exhausted.
func (lr *lineReader) next() (string, error) {
	s, err := lr.r.ReadString('\n')
	if err == io.EOF && s == "" {
		return "", io.EOF
	}
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("%s: %w", lr.name, err)
	}
	lr.line++
	if len(s) > maxRegLine {
		return "", lr.errorf("line longer than %d bytes", maxRegLine)
	}
	return strings.TrimSuffix(s, "\n"), nil
}

func (lr *lineReader) errorf(format string, args ...any) error {
	return &RegistrationError{File: lr.name, Line: lr.line, Err: fmt.Errorf(format, args...)}
}

// field reads the line of a record's field, failing on a truncated record.
func (lr *lineReader) field(what, path string) (string, error) {
	s, err := lr.next()
	if err == io.EOF {
		return "", &RegistrationError{File: lr.name, Line: lr.line + 1,
			Err: fmt.Errorf("file ends where the %s of %s was expected", what, path)}
	}
	return s, err
}

// parseRegistration reads registration records in file order.
func parseRegistration(r io.Reader, name string) ([]regEntry, error) {
	lr := &lineReader{r: bufio.NewReader(r), name: name}
	var out []regEntry
	seen := map[string]int{}
	storeDir := ""
	for {
		p, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		e := regEntry{line: lr.line}
		if p == "" {
			return nil, lr.errorf("empty line where a store path was expected")
		}
		dir, err := splitStorePath(p)
		if err != nil {
			return nil, lr.errorf("%w", err)
		}
		if storeDir == "" {
			storeDir = dir
		} else if dir != storeDir {
			return nil, lr.errorf("%s is not in the store directory %s of the paths before it", p, storeDir)
		}
		if prev, dup := seen[p]; dup {
			return nil, lr.errorf("%s is listed twice (first on line %d)", p, prev)
		}
		seen[p] = lr.line
		e.info.Path = p

		h, err := lr.field("NAR hash", p)
		if err != nil {
			return nil, err
		}
		if e.info.NarHash, err = NormaliseNarHash(h); err != nil {
			return nil, lr.errorf("NAR hash of %s: %w", p, err)
		}

		sz, err := lr.field("NAR size", p)
		if err != nil {
			return nil, err
		}
		if e.info.NarSize, err = strconv.ParseUint(sz, 10, 64); err != nil {
			return nil, lr.errorf("NAR size of %s: %q is not a decimal number", p, sz)
		}

		drv, err := lr.field("deriver", p)
		if err != nil {
			return nil, err
		}
		if drv != "" {
			if _, err := splitStorePath(drv); err != nil {
				return nil, lr.errorf("deriver of %s: %w", p, err)
			}
		}
		e.info.Deriver = drv

		ns, err := lr.field("reference count", p)
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseUint(ns, 10, 31)
		if err != nil {
			return nil, lr.errorf("reference count of %s: %q is not a decimal number", p, ns)
		}
		refSeen := map[string]bool{}
		for i := uint64(0); i < n; i++ {
			ref, err := lr.field(fmt.Sprintf("reference %d of %d", i+1, n), p)
			if err != nil {
				return nil, err
			}
			if _, err := splitStorePath(ref); err != nil {
				return nil, lr.errorf("reference of %s: %w", p, err)
			}
			if refSeen[ref] {
				continue
			}
			refSeen[ref] = true
			e.info.References = append(e.info.References, ref)
			e.refLines = append(e.refLines, lr.line)
		}
		out = append(out, e)
	}
	for _, e := range out {
		for i, ref := range e.info.References {
			if _, ok := seen[ref]; !ok {
				return nil, &RegistrationError{File: name, Line: e.refLines[i],
					Err: fmt.Errorf("%w: %s (referenced by %s) is not listed", ErrOutsideClosure, ref, e.info.Path)}
			}
		}
	}
	return out, nil
}

// ParseRegistration reads a registration file as nixpkgs' closureInfo and
// `nix-store --dump-db` write it: for each store path, the path, its NAR hash
// (base16, "sha256:<nix32>" or SRI), its NAR size, its deriver (may be
// empty), the number of references and the references. Every reference must
// be listed in the file. name is used in errors, which give the line.
//
// The result is sorted by path, each path's references sorted, and hashes
// normalised to "sha256:<nix32>".
func ParseRegistration(r io.Reader, name string) ([]PathInfo, error) {
	entries, err := parseRegistration(r, name)
	if err != nil {
		return nil, err
	}
	out := make([]PathInfo, len(entries))
	for i, e := range entries {
		out[i] = e.info
		slices.Sort(out[i].References)
	}
	sortPaths(out)
	return out, nil
}

func sortPaths(p []PathInfo) {
	slices.SortFunc(p, func(a, b PathInfo) int { return strings.Compare(a.Path, b.Path) })
}

// WriteRegistration writes paths as closureInfo writes its registration
// file: sorted by path, hashes as "sha256:<nix32>", an empty deriver line,
// references sorted, and nothing at all for an empty closure.
func WriteRegistration(w io.Writer, paths []PathInfo) error {
	sorted := slices.Clone(paths)
	sortPaths(sorted)
	bw := bufio.NewWriter(w)
	for _, p := range sorted {
		h, err := NormaliseNarHash(p.NarHash)
		if err != nil {
			return fmt.Errorf("registration of %s: %w", p.Path, err)
		}
		refs := slices.Clone(p.References)
		slices.Sort(refs)
		refs = slices.Compact(refs)
		fmt.Fprintf(bw, "%s\n%s\n%d\n\n%d\n", p.Path, h, p.NarSize, len(refs))
		for _, r := range refs {
			bw.WriteString(r)
			bw.WriteByte('\n')
		}
	}
	return bw.Flush()
}

// writeStorePaths writes closureInfo's store-paths file: one path a line,
// sorted.
func writeStorePaths(w io.Writer, paths []PathInfo) error {
	var b bytes.Buffer
	for _, p := range paths {
		b.WriteString(p.Path)
		b.WriteByte('\n')
	}
	_, err := w.Write(b.Bytes())
	return err
}
