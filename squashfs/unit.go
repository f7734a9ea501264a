package squashfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
)

// Cache stores the compressed data of units between builds; package
// github.com/nbimg/nbimg/cache implements it on a directory. Keys are
// lowercase hex sha256 strings that name everything the data depends on
// (the unit's name and file list, the compressor and its implementation,
// the block size and this package's layout version).
type Cache interface {
	// Get returns the entry stored under key, its header checked. An
	// error wrapping fs.ErrNotExist means there is none; any other error
	// is a damaged entry, which the writer ignores (and replaces). The
	// writer reads an entry's table from an entry it got, and calls
	// Verify before it uses any of its data.
	Get(key string) (CacheEntry, error)
	// Put starts writing the entry for key; nothing is visible before
	// Commit. Put fails for a cache that cannot be written.
	Put(key string) (CacheWriter, error)
}

// CacheEntry is a stored entry: Size bytes read with ReadAt.
type CacheEntry interface {
	io.ReaderAt
	Size() int64
	// Verify checks the whole entry against its checksum.
	Verify() error
	Close() error
}

// CacheWriter writes one entry: Commit makes it visible under its key,
// Abort drops it.
type CacheWriter interface {
	io.Writer
	Commit() error
	Abort()
}

// unitLayout versions the data layout of units: change it whenever the
// bytes a unit's data area holds, or the entry format, change.
const unitLayout = "nbimg-squashfs-unit 1"

// unitPlan is one unit of the data area.
type unitPlan struct {
	name   string   // Node.Unit
	path   string   // in the image
	inodes []*inode // its files with data, in inode order
	key    string   // cache key
	entry  *unitEntry
	bytes  int64 // file bytes
}

// unitEntry is the table of a cache entry: the unit's key, the size and
// sha256 of each of the unit's files (by inode order) and the size word
// of each block of its data area in order: the data blocks of each file
// the unit stores (also those whose blocks this image takes from an
// earlier copy) and its fragment blocks, where the plan writes them; then
// the table's own sha256. The compressed blocks come first in the entry,
// the table after them, then its length (8 bytes).
type unitEntry struct {
	sizes  []int64
	hashes [][]byte
	words  []uint32
	offs   []int64 // offset of each block in the entry
	data   int64   // bytes of blocks
}

// unitKey names everything the unit's data area depends on.
func (p *Plan) unitKey(u *unitPlan) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%q\n%s\n%s\n%s\nblock %d fragments %t duplicates %t hardlinks %t\n", unitLayout, u.name,
		p.comp.String(), p.comp.EncoderName(), encoderModules(), p.blockSize, !p.opts.NoFragments, !p.opts.NoDuplicates, !p.opts.NoHardlinks)
	for _, ino := range u.inodes {
		fmt.Fprintf(h, "%q %d\n", strings.TrimPrefix(ino.path, u.path), ino.data.size)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// encoderModules names the versions of the compression modules this
// program was built with, so that entries written by another version of
// an encoder (whose bytes may differ) are not used.
var encoderModules = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "no build information"
	}
	var b strings.Builder
	for _, m := range bi.Deps {
		switch m.Path {
		case "github.com/DataDog/zstd", "github.com/klauspost/compress", "github.com/ulikunitz/xz":
			if m.Replace != nil {
				m = m.Replace
			}
			fmt.Fprintf(&b, "%s@%s %s;", m.Path, m.Version, m.Sum)
		}
	}
	return b.String()
})

func (p *Plan) warn(msg string) {
	if p.opts.Warn != nil {
		p.opts.Warn("squashfs: " + msg)
	}
}

// lookupUnits computes the units' keys and, with a cache, reads the
// tables of the entries it holds; their files' hashes are then known
// without reading the files. The entries are verified when they are used
// (reopenEntry), so that each is read once more only.
func (p *Plan) lookupUnits(ctx context.Context) error {
	for _, u := range p.units {
		u.key = p.unitKey(u)
		for _, ino := range u.inodes {
			u.bytes += ino.data.size
		}
		if p.opts.Cache == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		e, t, err := p.openEntry(u)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				p.stats.CacheDamaged++
				p.warn(fmt.Sprintf("cache entry of %s ignored: %v", u.path, err))
			}
			continue
		}
		e.Close()
		u.entry = t
		for i, ino := range u.inodes {
			ino.data.hash, ino.data.full = u.entry.hashes[i], true
		}
	}
	return nil
}

// openEntry gets u's entry from the cache and reads its table.
func (p *Plan) openEntry(u *unitPlan) (CacheEntry, *unitEntry, error) {
	e, err := p.opts.Cache.Get(u.key)
	if err != nil {
		return nil, nil, err
	}
	t, err := p.readEntry(u, e)
	if err != nil {
		e.Close()
		return nil, nil, err
	}
	return e, t, nil
}

// reopenEntry gets u's entry again while writing, verifies it and checks
// that it is the one planned with.
func (p *Plan) reopenEntry(u *unitPlan) (CacheEntry, error) {
	e, t, err := p.openEntry(u)
	if err != nil {
		return nil, err
	}
	if err := e.Verify(); err != nil {
		e.Close()
		return nil, err
	}
	same := slices.Equal(t.words, u.entry.words) && slices.EqualFunc(t.hashes, u.entry.hashes, bytes.Equal)
	if !same {
		e.Close()
		return nil, fmt.Errorf("%w: it changed since the plan", errEntry)
	}
	return e, nil
}

var errEntry = errors.New("not an entry of this unit")

func (p *Plan) readEntry(u *unitPlan, e CacheEntry) (*unitEntry, error) {
	size := e.Size()
	var b8 [8]byte
	if size < 8 {
		return nil, fmt.Errorf("%w: %d bytes", errEntry, size)
	}
	if _, err := e.ReadAt(b8[:], size-8); err != nil {
		return nil, err
	}
	tlen := binary.LittleEndian.Uint64(b8[:])
	if tlen > uint64(size-8) || tlen > 1<<30 {
		return nil, fmt.Errorf("%w: table of %d bytes", errEntry, tlen)
	}
	tab := make([]byte, tlen)
	if _, err := e.ReadAt(tab, size-8-int64(tlen)); err != nil {
		return nil, err
	}
	// The table has a checksum of its own: the files' hashes in it decide
	// duplicates before the entry as a whole is verified.
	if len(tab) < sha256.Size {
		return nil, fmt.Errorf("%w: table of %d bytes", errEntry, tlen)
	}
	tab, sum := tab[:len(tab)-sha256.Size], tab[len(tab)-sha256.Size:]
	if s := sha256.Sum256(tab); !bytes.Equal(s[:], sum) {
		return nil, fmt.Errorf("%w: table checksum mismatch", errEntry)
	}
	t := &unitEntry{data: size - 8 - int64(tlen)}
	rd := entryReader{b: tab}
	if k := rd.bytes(len(u.key)); string(k) != u.key {
		return nil, fmt.Errorf("%w: an entry of another unit", errEntry)
	}
	if n := rd.u32(); int(n) != len(u.inodes) {
		return nil, fmt.Errorf("%w: %d files, the unit has %d", errEntry, n, len(u.inodes))
	}
	for _, ino := range u.inodes {
		sz := int64(rd.u64())
		if sz != ino.data.size {
			return nil, fmt.Errorf("%w: %s is %d bytes, the entry says %d", errEntry, ino.path, ino.data.size, sz)
		}
		t.sizes = append(t.sizes, sz)
		t.hashes = append(t.hashes, rd.bytes(sha256.Size))
	}
	n := rd.u32()
	off := int64(0)
	for range n {
		w := rd.u32()
		if rd.err != nil {
			break
		}
		l := int64(w &^ dataRaw)
		if l > int64(p.blockSize) || w&dataRaw != 0 && l == 0 {
			return nil, fmt.Errorf("%w: block size word %#x", errEntry, w)
		}
		t.words = append(t.words, w)
		t.offs = append(t.offs, off)
		off += l
	}
	if rd.err != nil || len(rd.b) != 0 {
		return nil, fmt.Errorf("%w: malformed table", errEntry)
	}
	if off != t.data {
		return nil, fmt.Errorf("%w: blocks of %d bytes, the entry holds %d", errEntry, off, t.data)
	}
	return t, nil
}

type entryReader struct {
	b   []byte
	err error
}

func (r *entryReader) bytes(n int) []byte {
	if len(r.b) < n {
		r.err, r.b = io.ErrUnexpectedEOF, nil
		return make([]byte, n)
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *entryReader) u32() uint32 { return binary.LittleEndian.Uint32(r.bytes(4)) }
func (r *entryReader) u64() uint64 { return binary.LittleEndian.Uint64(r.bytes(8)) }

// checkWords verifies that an entry's blocks fit the plan's layout of
// the unit: one word per data block of each file item and per fragment,
// each a plausible size for its block.
func (p *Plan) checkWords(u *unitPlan, items []item) error {
	t := u.entry
	i := 0
	next := func(plain int64, file bool) error {
		if i >= len(t.words) {
			return fmt.Errorf("%w: %d blocks, the unit has more", errEntry, len(t.words))
		}
		w := t.words[i]
		i++
		l := int64(w &^ dataRaw)
		switch {
		case w == 0 && file:
		case w&dataRaw != 0 && l != plain, w&dataRaw == 0 && (l == 0 || l >= plain):
			return fmt.Errorf("%w: block %d has size word %#x for %d bytes", errEntry, i-1, w, plain)
		}
		return nil
	}
	for _, it := range items {
		if it.file != nil {
			for b := range it.file.blocks {
				if err := next(p.blockLen(it.file, b), true); err != nil {
					return err
				}
			}
		} else if it.frag >= 0 {
			if err := next(int64(p.frags[it.frag].used), false); err != nil {
				return err
			}
		}
	}
	if i != len(t.words) {
		return fmt.Errorf("%w: %d blocks, the unit has %d", errEntry, len(t.words), i)
	}
	return nil
}

// checkEntries drops the entries whose blocks do not fit the layout.
func (p *Plan) checkEntries() {
	for _, u := range p.units {
		if u.entry == nil {
			continue
		}
		if err := p.checkWords(u, p.unitItems(u)); err != nil {
			u.entry = nil
			p.stats.CacheDamaged++
			p.warn(fmt.Sprintf("cache entry of %s ignored: %v", u.path, err))
		}
	}
}

// blockLen is the length of data block b of f.
func (p *Plan) blockLen(f *fileData, b int) int64 {
	return min(int64(p.blockSize), f.size-int64(b)*int64(p.blockSize))
}

// unitItems returns the items of unit u, from its start to its end.
func (p *Plan) unitItems(u *unitPlan) []item {
	start := -1
	for i, it := range p.items {
		if it.start == u {
			start = i
		}
		if it.end == u {
			return p.items[start+1 : i]
		}
	}
	return nil
}

// unitRecord collects a unit's blocks on their way into a cache entry.
type unitRecord struct {
	u     *unitPlan
	w     CacheWriter
	words []uint32
	err   error
}

func (r *unitRecord) add(word uint32, data []byte) {
	if r.err != nil {
		return
	}
	r.words = append(r.words, word)
	_, r.err = r.w.Write(data)
}

// finish writes the table and commits the entry; hash gives each file's
// sha256.
func (r *unitRecord) finish(hash func(*fileData) []byte) error {
	if r.err != nil {
		r.w.Abort()
		return r.err
	}
	t := le(r.u.key)
	t = t.u32(uint32(len(r.u.inodes)))
	for _, ino := range r.u.inodes {
		h := hash(ino.data)
		if len(h) != sha256.Size {
			r.w.Abort()
			return fmt.Errorf("%s: no hash", ino.path)
		}
		t = t.u64(uint64(ino.data.size))
		t = append(t, h...)
	}
	t = t.u32(uint32(len(r.words)))
	for _, w := range r.words {
		t = t.u32(w)
	}
	sum := sha256.Sum256(t)
	t = append(t, sum[:]...)
	t = t.u64(uint64(len(t)))
	if _, err := r.w.Write(t); err != nil {
		r.w.Abort()
		return err
	}
	return r.w.Commit()
}
