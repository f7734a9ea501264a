package initrd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
)

// Limits of the newc format and the kernel's unpacker.
const (
	// MaxFileSize is the largest file a newc record can hold.
	MaxFileSize = 1<<32 - 1
	// MaxNameLen is the longest name or symbolic link target the kernel
	// accepts (PATH_MAX less the terminating NUL).
	MaxNameLen = 4095
	// DefaultMTime is the modification time of every entry unless another
	// is given, as makeInitrdNG does.
	DefaultMTime = 1
)

// Errors returned by this package.
var (
	ErrFileTooLarge = errors.New("initrd: file too large for newc cpio (4 GiB or more)")
	ErrBadName      = errors.New("initrd: invalid entry name")
	ErrDuplicate    = errors.New("initrd: duplicate entry")
	ErrBadMTime     = errors.New("initrd: modification time out of newc range (0 to 4294967295)")
	ErrUnsupported  = errors.New("initrd: unsupported file type")
	ErrSizeChanged  = errors.New("initrd: file size changed while writing")
)

type kind uint8

const (
	kindDir kind = iota
	kindFile
	kindSymlink
)

type entry struct {
	name     string
	kind     kind
	perm     fs.FileMode // permission, setuid, setgid and sticky bits
	size     int64
	target   string
	open     func() (io.ReadCloser, error)
	implicit bool // a parent directory nobody added explicitly
}

// Archive collects entries and writes them as one deterministic newc cpio
// archive. File contents are read only when the archive is written. The zero
// value is not usable; call [NewArchive].
type Archive struct {
	mtime   time.Time
	entries map[string]*entry
}

// NewArchive returns an empty archive whose entries all carry mtime as
// their modification time; the zero time means [DefaultMTime].
func NewArchive(mtime time.Time) (*Archive, error) {
	mt, err := resolveMTime(mtime)
	if err != nil {
		return nil, err
	}
	return &Archive{mtime: mt, entries: map[string]*entry{}}, nil
}

func resolveMTime(t time.Time) (time.Time, error) {
	if t.IsZero() {
		return time.Unix(DefaultMTime, 0), nil
	}
	if s := t.Unix(); s < 0 || s > 1<<32-1 {
		return time.Time{}, fmt.Errorf("%w: %d", ErrBadMTime, s)
	}
	return time.Unix(t.Unix(), 0), nil
}

// CleanName turns a path into the name stored in the archive: slash
// separated, relative (no leading "/" or "./"), without "." or ".."
// elements. It fails for the root itself, for ".." and for names longer
// than [MaxNameLen].
func CleanName(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w %q: contains a NUL byte", ErrBadName, name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w %q: contains \"..\"", ErrBadName, name)
		}
	}
	c := strings.TrimLeft(path.Clean("/"+name), "/")
	if c == "" {
		return "", fmt.Errorf("%w %q: names the root", ErrBadName, name)
	}
	if len(c) > MaxNameLen {
		return "", fmt.Errorf("%w %q: longer than %d bytes", ErrBadName, c[:32]+"...", MaxNameLen)
	}
	return c, nil
}

func (a *Archive) add(e *entry) error {
	if old, ok := a.entries[e.name]; ok {
		if !(old.implicit && e.kind == kindDir) {
			return fmt.Errorf("%w %q", ErrDuplicate, e.name)
		}
	}
	// Parents first, so a conflict leaves the archive unchanged.
	var parents []string
	for dir := path.Dir(e.name); dir != "."; dir = path.Dir(dir) {
		if p, ok := a.entries[dir]; ok {
			if p.kind != kindDir {
				return fmt.Errorf("%w %q: its parent %q is not a directory", ErrDuplicate, e.name, dir)
			}
			break
		}
		parents = append(parents, dir)
	}
	for _, dir := range parents {
		a.entries[dir] = &entry{name: dir, kind: kindDir, perm: 0o755, implicit: true}
	}
	a.entries[e.name] = e
	return nil
}

// AddDir adds a directory with the given permission bits. Parent
// directories that are not added explicitly get mode 0755.
func (a *Archive) AddDir(name string, perm fs.FileMode) error {
	n, err := CleanName(name)
	if err != nil {
		return err
	}
	return a.add(&entry{name: n, kind: kindDir, perm: perm & permMask})
}

// AddFile adds a regular file of the given size whose contents open
// returns when the archive is written. The reader must yield exactly size
// bytes.
func (a *Archive) AddFile(name string, perm fs.FileMode, size int64, open func() (io.ReadCloser, error)) error {
	n, err := CleanName(name)
	if err != nil {
		return err
	}
	if size < 0 || size > MaxFileSize {
		return fmt.Errorf("%w: %q is %d bytes", ErrFileTooLarge, n, size)
	}
	return a.add(&entry{name: n, kind: kindFile, perm: perm & permMask, size: size, open: open})
}

// AddBytes adds a regular file holding data.
func (a *Archive) AddBytes(name string, perm fs.FileMode, data []byte) error {
	return a.AddFile(name, perm, int64(len(data)), func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// AddSymlink adds a symbolic link to target (mode 0777, as Linux shows
// links).
func (a *Archive) AddSymlink(name, target string) error {
	n, err := CleanName(name)
	if err != nil {
		return err
	}
	if target == "" || len(target) > MaxNameLen || strings.ContainsRune(target, 0) {
		return fmt.Errorf("%w: symbolic link %q has an empty, too long or NUL-containing target", ErrBadName, n)
	}
	return a.add(&entry{name: n, kind: kindSymlink, perm: 0o777, target: target, size: int64(len(target))})
}

// AddFS adds every directory, regular file and symbolic link of fsys under
// the directory prefix ("" or "/" for the root), keeping permission bits.
// Symbolic links need fsys to implement [fs.ReadLinkFS] (as [os.DirFS]
// does). Other file types fail with [ErrUnsupported].
func (a *Archive) AddFS(fsys fs.FS, prefix string) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := path.Join("/", prefix, p)
		if name == "/" {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode()
		switch {
		case mode.IsDir():
			return a.AddDir(name, mode)
		case mode.IsRegular():
			fp := p
			return a.AddFile(name, mode, info.Size(), func() (io.ReadCloser, error) { return fsys.Open(fp) })
		case mode&fs.ModeSymlink != 0:
			target, err := fs.ReadLink(fsys, p)
			if err != nil {
				return err
			}
			return a.AddSymlink(name, target)
		}
		return fmt.Errorf("%w: %s is %v", ErrUnsupported, p, mode.Type())
	})
}

// Names returns the stored names in archive order.
func (a *Archive) Names() []string {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names) // bytewise; a parent sorts before its children
	return names
}

const permMask = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// unixMode converts Go's mode bits to the st_mode value newc stores.
func unixMode(k kind, perm fs.FileMode) cpio.FileMode {
	m := cpio.FileMode(perm & fs.ModePerm)
	if perm&fs.ModeSetuid != 0 {
		m |= cpio.ModeSetuid
	}
	if perm&fs.ModeSetgid != 0 {
		m |= cpio.ModeSetgid
	}
	if perm&fs.ModeSticky != 0 {
		m |= cpio.ModeSticky
	}
	switch k {
	case kindDir:
		m |= cpio.TypeDir
	case kindSymlink:
		m |= cpio.TypeSymlink
	default:
		m |= cpio.TypeReg
	}
	return m
}

// header builds the newc record of an entry with the given inode number.
func (a *Archive) header(e *entry, ino int64) *cpio.Header {
	links := 1
	if e.kind == kindDir {
		links = 2
	}
	return &cpio.Header{
		Name:    e.name,
		Mode:    unixMode(e.kind, e.perm),
		Links:   links,
		Size:    e.size,
		ModTime: a.mtime,
		Inode:   ino,
	}
}

// WriteTo writes the archive, trailer included, to w. Its length is always
// a multiple of 4.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	if err := a.writeEntries(cw, a.Names(), 1); err != nil {
		return cw.n, err
	}
	err := writeTrailer(cw)
	return cw.n, err
}

// writeEntries writes the named entries with inode numbers from ino on,
// without a trailer.
func (a *Archive) writeEntries(w io.Writer, names []string, ino int64) error {
	cw := cpio.NewWriter(w)
	for i, n := range names {
		e := a.entries[n]
		if err := cw.WriteHeader(a.header(e, ino+int64(i))); err != nil {
			return fmt.Errorf("writing cpio header of %s: %w", n, err)
		}
		switch e.kind {
		case kindSymlink:
			if _, err := io.WriteString(cw, e.target); err != nil {
				return fmt.Errorf("writing cpio entry %s: %w", n, err)
			}
		case kindFile:
			if err := copyEntry(cw, e); err != nil {
				return err
			}
		}
	}
	// Flush writes the padding of the last entry.
	if err := cw.Flush(); err != nil {
		return fmt.Errorf("writing cpio padding: %w", err)
	}
	return nil
}

func copyEntry(w io.Writer, e *entry) error {
	rc, err := e.open()
	if err != nil {
		return fmt.Errorf("opening %s: %w", e.name, err)
	}
	defer rc.Close()
	n, err := io.Copy(w, io.LimitReader(rc, e.size))
	if err != nil {
		return fmt.Errorf("copying %s: %w", e.name, err)
	}
	if n != e.size {
		return fmt.Errorf("%w: %s: expected %d bytes, read %d", ErrSizeChanged, e.name, e.size, n)
	}
	var one [1]byte
	if m, _ := rc.Read(one[:]); m > 0 {
		return fmt.Errorf("%w: %s grew past %d bytes", ErrSizeChanged, e.name, e.size)
	}
	return nil
}

// writeTrailer writes the TRAILER!!! record and its padding.
func writeTrailer(w io.Writer) error {
	if err := cpio.NewWriter(w).Close(); err != nil {
		return fmt.Errorf("writing cpio trailer: %w", err)
	}
	return nil
}

// headerBytes returns the encoded newc header (with name and padding) of h.
func headerBytes(h *cpio.Header) ([]byte, error) {
	var buf bytes.Buffer
	if err := cpio.NewWriter(&buf).WriteHeader(h); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
