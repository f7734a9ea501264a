// Package cache keeps the rebuild cache of nbimg in a directory: entries
// of compressed store-image data (squashfs.Cache), each under a key that
// names everything its bytes depend on, so that a rebuild copies unchanged
// store paths instead of reading and compressing them again.
//
// Each entry is one file, DIR/v1/KK/KEY, holding a header (format and
// key), the payload, and the sha256 of both. Get checks the header and the
// length, Entry.Verify the checksum (the squashfs writer verifies an entry
// before it uses its data): a damaged, truncated or foreign entry is
// reported as such, and the writer that gets that answer writes the entry
// anew.
// Entries are written to a temporary file in the same directory and
// renamed into place, so builds sharing a directory (two CI jobs) never
// see half an entry and may write the same entry at once; names are the
// keys, so both write the same bytes. A directory that cannot be written
// is used read-only: Get works and Put fails with ErrReadOnly.
//
// An entry's modification time is its last use (Get sets it when it can);
// Prune removes the least recently used entries first. Nothing else
// bounds the directory's size.
package cache

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nbimg/nbimg/squashfs"
)

// magic starts every entry; the digit is the entry format's version.
const magic = "nbimg cache 1\n\x00\x00"

const (
	version = "v1"
	keyLen  = 64 // hex sha256
	header  = len(magic) + keyLen
	trailer = sha256.Size
	tmpPref = ".tmp-"
	// staleTmp is the age after which Prune removes a temporary file:
	// one left by a build that was killed.
	staleTmp = time.Hour
)

// ErrReadOnly is returned by Put when the directory cannot be written.
var ErrReadOnly = errors.New("cache: the directory is read-only")

// ErrDamaged is returned (wrapped) by Get for an entry that is damaged,
// truncated or not an entry of this format and key.
var ErrDamaged = errors.New("cache: damaged entry")

// Dir is a cache directory. It is safe for use by several goroutines and
// processes at once.
type Dir struct {
	root     string // DIR/v1
	readOnly bool
}

var _ squashfs.Cache = (*Dir)(nil)

// Open opens the cache in dir, creating the directory when it can. A
// directory that exists but cannot be written is opened read-only.
func Open(dir string) (*Dir, error) {
	if dir == "" {
		return nil, errors.New("cache: no directory given")
	}
	d := &Dir{root: filepath.Join(dir, version)}
	if err := os.MkdirAll(d.root, 0o755); err != nil {
		if st, serr := os.Stat(dir); serr != nil || !st.IsDir() {
			return nil, fmt.Errorf("cache: %w", err)
		}
		d.readOnly = true
		return d, nil
	}
	f, err := os.CreateTemp(d.root, tmpPref+"probe-*")
	if err != nil {
		d.readOnly = true
		return d, nil
	}
	f.Close()
	os.Remove(f.Name())
	return d, nil
}

// ReadOnly reports whether Put is refused.
func (d *Dir) ReadOnly() bool { return d.readOnly }

// Path is the directory holding the entries.
func (d *Dir) Path() string { return d.root }

func (d *Dir) path(key string) (string, error) {
	if len(key) != keyLen || strings.Trim(key, "0123456789abcdef") != "" {
		return "", fmt.Errorf("cache: key %q is not a lowercase hex sha256", key)
	}
	return filepath.Join(d.root, key[:2], key), nil
}

// Entry is an entry whose header has been checked.
type Entry struct {
	f    *os.File
	size int64
}

// Verify checks the entry's checksum, reading all of it.
func (e *Entry) Verify() error {
	h := sha256.New()
	end := int64(header) + e.size
	if _, err := io.Copy(h, io.NewSectionReader(e.f, 0, end)); err != nil {
		return fmt.Errorf("%w %s: %v", ErrDamaged, e.f.Name(), err)
	}
	sum := make([]byte, trailer)
	if _, err := e.f.ReadAt(sum, end); err != nil {
		return fmt.Errorf("%w %s: %v", ErrDamaged, e.f.Name(), err)
	}
	if !bytes.Equal(sum, h.Sum(nil)) {
		return fmt.Errorf("%w %s: checksum mismatch", ErrDamaged, e.f.Name())
	}
	return nil
}

// ReadAt reads the payload.
func (e *Entry) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off > e.size {
		return 0, fmt.Errorf("cache: read at %d of a %d-byte entry", off, e.size)
	}
	if rest := e.size - off; int64(len(b)) > rest {
		n, err := e.f.ReadAt(b[:rest], int64(header)+off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return e.f.ReadAt(b, int64(header)+off)
}

// Size is the payload's length.
func (e *Entry) Size() int64 { return e.size }

// Close closes the entry.
func (e *Entry) Close() error { return e.f.Close() }

// Get opens the entry stored under key and checks its header and length
// (Verify checks the rest). It returns an error wrapping fs.ErrNotExist
// when there is none, and one wrapping ErrDamaged when the file is not an
// entry for key.
func (d *Dir) Get(key string) (squashfs.CacheEntry, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	e, err := checkHeader(f, key)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w %s: %v", ErrDamaged, p, err)
	}
	// Last use, for Prune; a read-only directory keeps the old time.
	now := time.Now()
	os.Chtimes(p, now, now)
	return e, nil
}

func checkHeader(f *os.File, key string) (*Entry, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < int64(header+trailer) {
		return nil, fmt.Errorf("%d bytes, too short", size)
	}
	hd := make([]byte, header)
	if _, err := f.ReadAt(hd, 0); err != nil {
		return nil, err
	}
	if string(hd[:len(magic)]) != magic {
		return nil, errors.New("not an nbimg cache entry of this version")
	}
	if string(hd[len(magic):]) != key {
		return nil, fmt.Errorf("an entry for key %.16s…", hd[len(magic):])
	}
	return &Entry{f: f, size: size - int64(header+trailer)}, nil
}

// Put starts the entry for key, to be made visible by Commit.
func (d *Dir) Put(key string) (squashfs.CacheWriter, error) {
	if d.readOnly {
		return nil, ErrReadOnly
	}
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), tmpPref+"*")
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	w := &writer{f: f, path: p, h: sha256.New()}
	w.bw = bufio.NewWriterSize(io.MultiWriter(f, w.h), 1<<20)
	w.bw.WriteString(magic)
	w.bw.WriteString(key)
	return w, nil
}

type writer struct {
	f    *os.File
	bw   *bufio.Writer
	h    hash.Hash
	path string
	err  error
}

func (w *writer) Write(b []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.bw.Write(b)
	w.err = err
	return n, err
}

// Commit writes the checksum and renames the entry into place.
func (w *writer) Commit() error {
	if w.err == nil {
		w.err = w.bw.Flush()
	}
	if w.err == nil {
		_, w.err = w.f.Write(w.h.Sum(nil))
	}
	if w.err == nil {
		w.err = w.f.Chmod(0o644)
	}
	if cerr := w.f.Close(); w.err == nil {
		w.err = cerr
	}
	if w.err == nil {
		w.err = os.Rename(w.f.Name(), w.path)
	}
	if w.err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("cache: store %s: %w", w.path, w.err)
	}
	return nil
}

// Abort drops the entry.
func (w *writer) Abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// Stats describe a cache directory.
type Stats struct {
	Entries    int
	Bytes      int64
	Oldest     time.Time // least recent use; zero for no entries
	Newest     time.Time
	TempFiles  int // unfinished entries (being written, or left by a killed build)
	TempBytes  int64
	ReadOnly   bool
	Directory  string
	StaleTemps int // temporary files older than an hour
}

type file struct {
	path string
	size int64
	used time.Time
	tmp  bool
}

func (d *Dir) list() ([]file, error) {
	var out []file
	err := filepath.WalkDir(d.root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if de.IsDir() {
			return nil
		}
		st, err := de.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed meanwhile
			}
			return err
		}
		name := de.Name()
		tmp := strings.HasPrefix(name, tmpPref)
		if !tmp && len(name) != keyLen {
			return nil // not ours
		}
		out = append(out, file{p, st.Size(), st.ModTime(), tmp})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return out, nil
}

// Stats counts the entries.
func (d *Dir) Stats(now time.Time) (Stats, error) {
	files, err := d.list()
	if err != nil {
		return Stats{}, err
	}
	s := Stats{ReadOnly: d.readOnly, Directory: d.root}
	for _, f := range files {
		if f.tmp {
			s.TempFiles++
			s.TempBytes += f.size
			if now.Sub(f.used) > staleTmp {
				s.StaleTemps++
			}
			continue
		}
		s.Entries++
		s.Bytes += f.size
		if s.Oldest.IsZero() || f.used.Before(s.Oldest) {
			s.Oldest = f.used
		}
		if f.used.After(s.Newest) {
			s.Newest = f.used
		}
	}
	return s, nil
}

// PruneResult says what Prune removed and what is left.
type PruneResult struct {
	Removed      int
	RemovedBytes int64
	Entries      int
	Bytes        int64
}

// Prune removes entries last used before now-olderThan (when olderThan >
// 0), then the least recently used ones until the entries take at most
// maxSize bytes (when maxSize >= 0), and temporary files older than an
// hour.
func (d *Dir) Prune(maxSize int64, olderThan time.Duration, now time.Time) (PruneResult, error) {
	if d.readOnly {
		return PruneResult{}, ErrReadOnly
	}
	files, err := d.list()
	if err != nil {
		return PruneResult{}, err
	}
	var r PruneResult
	remove := func(f file) error {
		if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cache: %w", err)
		}
		if !f.tmp {
			r.Removed++
			r.RemovedBytes += f.size
		}
		return nil
	}
	var entries []file
	for _, f := range files {
		if f.tmp {
			if now.Sub(f.used) > staleTmp {
				if err := remove(f); err != nil {
					return r, err
				}
			}
			continue
		}
		entries = append(entries, f)
	}
	// Least recently used first; ties by name, so the result is the same
	// on every run.
	slices.SortFunc(entries, func(a, b file) int {
		if c := a.used.Compare(b.used); c != 0 {
			return c
		}
		return strings.Compare(a.path, b.path)
	})
	var total int64
	for _, f := range entries {
		total += f.size
	}
	for _, f := range entries {
		old := olderThan > 0 && now.Sub(f.used) > olderThan
		big := maxSize >= 0 && total > maxSize
		if !old && !big {
			r.Entries++
			r.Bytes += f.size
			continue
		}
		if err := remove(f); err != nil {
			return r, err
		}
		total -= f.size
	}
	return r, nil
}
