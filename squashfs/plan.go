package squashfs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultBlockSize is mksquashfs's default block size; Nix store images use
// 1 MiB.
const DefaultBlockSize = 128 << 10

// Options control the image. The zero value gives mksquashfs's defaults
// (128 KiB blocks, zstd level 15, duplicates removed, hard links kept).
type Options struct {
	BlockSize  int        // a power of two from 4 KiB to 1 MiB; 0 means DefaultBlockSize
	Processors int        // compression workers; 0 means runtime.NumCPU()
	Compressor Compressor // zero value: zstd at level 15

	// MkfsTime is the superblock time. When zero, it is the newest mtime
	// in the tree, so it never depends on the clock.
	MkfsTime time.Time
	// AllTime, when not zero, replaces every inode's mtime.
	AllTime time.Time
	// AllRoot makes every inode owned by uid 0 and gid 0.
	AllRoot bool
	// RootMode, when not zero or when SetRootMode is true, replaces the
	// root directory's permissions.
	RootMode    uint16
	SetRootMode bool // apply RootMode even when it is 0

	NoFragments  bool // store tails as short blocks instead of packing them into fragments
	NoDuplicates bool // store identical files twice
	NoHardlinks  bool // make each hard link an inode of its own

	// Progress, when set, is called from one goroutine after each block
	// is written.
	Progress func(Progress)

	// Cache, when set, keeps the compressed data of units (Node.Unit)
	// between builds: units found in it are copied instead of read and
	// compressed, the others are stored in it as they are written. The
	// image is the same with or without a cache. Damaged entries are
	// ignored (and rewritten); failing to store one is a warning, not an
	// error.
	Cache Cache

	// Warn, when set, receives warnings, each a line without a newline:
	// input that the image cannot carry (extended attributes, reported once
	// with the first file that has them) and cache trouble. It is called
	// from one goroutine at a time.
	Warn func(string)
}

// Progress reports how far writing has come.
type Progress struct {
	Bytes, TotalBytes int64 // file bytes read
	Files, TotalFiles int   // regular files (with data) read
}

// Stats describe a written image.
type Stats struct {
	Inodes         int
	Files          int   // regular file inodes
	Dirs           int   // directories
	InputBytes     int64 // sum of regular file sizes, each inode once
	OutputBytes    int64 // image size with padding
	Duplicates     int   // files stored as a reference to an identical earlier file
	DuplicateBytes int64 // their size
	DataBlocks     int   // data blocks written (not counting sparse ones)
	SparseBlocks   int
	Fragments      int

	// XattrFiles counts input paths with extended attributes, which the
	// image does not carry; XattrExample names the first.
	XattrFiles   int
	XattrExample string

	// Units counts units (Node.Unit) with file data. With Options.Cache,
	// CacheHits of them were copied from the cache and CacheMisses were
	// compressed; CacheReusedBytes are the file bytes of the hits (read and
	// compressed by none) and CacheReadBytes the compressed bytes copied.
	// CacheStored counts entries written, CacheDamaged entries found
	// damaged, truncated or not of this layout (ignored, then rewritten).
	Units            int
	CacheHits        int
	CacheMisses      int
	CacheReusedBytes int64
	CacheReadBytes   int64
	CacheStored      int
	CacheDamaged     int
}

// Plan is the layout of an image: a pure function of the tree, its file
// contents and the options. Write carries it out without changing it, so a
// plan can be written more than once (and gives the same bytes each time,
// if the files have not changed).
type Plan struct {
	opts      Options
	blockSize int
	comp      Compressor
	inodes    []*inode // by inode number - 1; the root is last
	root      *inode
	items     []item // data, in image order
	frags     []*frag
	units     []*unitPlan
	ids       []uint32
	mkfsTime  uint32
	stats     Stats
	nfiles    int // files with data (not duplicates)
}

type inode struct {
	typ     Type
	node    *Node
	path    string // in the image, for messages
	num     uint32
	nlink   uint32
	perm    uint16
	uid     uint16 // id table indexes
	gid     uint16
	mtime   uint32
	parent  *inode
	entries []entry // directories, sorted
	data    *fileData
}

type entry struct {
	name string
	ino  *inode
}

// fileData is the content of a regular file; duplicates share one.
type fileData struct {
	node   *Node
	path   string
	size   int64
	blocks int    // blocks stored as data blocks
	frag   int    // fragment index or -1
	fragAt int    // offset in the fragment block
	hash   []byte // sha256, when compared with another file
	full   bool   // hash is of the whole file
	id     int    // index of its placement while writing
	placed bool   // laid out (duplicates share a placed one)

	unit *unitPlan // the unit the file belongs to, or nil
	// blocksFrom, when set, is an identical file of an earlier unit (or of
	// none) whose data blocks this file uses; its tail still goes into its
	// own unit's fragment, so that a unit's data never depends on another.
	blocksFrom *fileData
}

type frag struct {
	used int // bytes of tails
}

// item is one step of the data area: a file's blocks (and tail), the
// writing of a complete fragment block, or the start or end of a unit.
type item struct {
	file       *fileData
	frag       int
	start, end *unitPlan
}

// maxIDs is the most distinct uids and gids an image holds: the id count
// in the superblock is 16 bits wide.
const maxIDs = 1<<16 - 1

// NewPlan checks the tree and lays out the image. It reads the files whose
// size equals another file's size, to find duplicates.
func NewPlan(ctx context.Context, t *Tree, opts Options) (*Plan, error) {
	if t == nil || t.Root == nil || t.Root.Type != TypeDir {
		return nil, errors.New("squashfs: the tree has no root directory")
	}
	bs := opts.BlockSize
	if bs == 0 {
		bs = DefaultBlockSize
	}
	if bs < 4096 || bs > 1<<20 || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("squashfs: block size %d is not a power of two from 4096 to 1048576", bs)
	}
	if opts.Processors <= 0 {
		opts.Processors = runtime.NumCPU()
	}
	if err := opts.Compressor.validate(bs); err != nil {
		return nil, err
	}
	p := &Plan{opts: opts, blockSize: bs, comp: opts.Compressor}
	if err := p.number(t.Root); err != nil {
		return nil, err
	}
	if p.stats.XattrFiles > 0 {
		more := ""
		if n := p.stats.XattrFiles - 1; n > 0 {
			more = fmt.Sprintf(" (and %d more paths)", n)
		}
		p.warn(fmt.Sprintf("%s%s has extended attributes: the image does not carry them", p.stats.XattrExample, more))
	}
	if err := p.lookupUnits(ctx); err != nil {
		return nil, err
	}
	if err := p.layoutData(ctx); err != nil {
		return nil, err
	}
	p.checkEntries()
	return p, nil
}

// number creates the inodes, numbered as mksquashfs does: depth-first with
// entries in bytewise order, a directory before its entries, the root last.
func (p *Plan) number(root *Node) error {
	nb := &numberer{p: p, links: map[LinkID]*inode{}, ids: map[uint32]uint16{}, dirs: map[*Node]bool{}}
	r, err := nb.inode(root, "/") // the root's ids come first, its number last
	if err != nil {
		return err
	}
	if p.opts.RootMode != 0 || p.opts.SetRootMode {
		r.perm = p.opts.RootMode & 0o7777
	}
	if err := nb.walk(r); err != nil {
		return err
	}
	p.inodes = append(p.inodes, r)
	r.num = uint32(len(p.inodes))
	p.root = r

	newest := int64(0)
	for _, ino := range p.inodes {
		newest = max(newest, int64(ino.mtime))
		switch ino.typ {
		case TypeDir:
			p.stats.Dirs++
		case TypeFile:
			p.stats.Files++
			p.stats.InputBytes += ino.data.size
		}
	}
	p.stats.Inodes = len(p.inodes)
	p.mkfsTime = uint32(newest)
	if !p.opts.MkfsTime.IsZero() {
		p.mkfsTime = clampTime(p.opts.MkfsTime.Unix())
	}
	return nil
}

func clampTime(t int64) uint32 { return uint32(min(max(t, 0), 1<<32-1)) }

type numberer struct {
	p     *Plan
	links map[LinkID]*inode
	ids   map[uint32]uint16
	dirs  map[*Node]bool // directories seen, against cycles
	unit  *unitPlan      // the unit being numbered, or nil
}

// id returns the id table index of a uid or gid, adding it if new.
func (nb *numberer) id(v uint32) (uint16, error) {
	if i, ok := nb.ids[v]; ok {
		return i, nil
	}
	if len(nb.p.ids) == maxIDs {
		return 0, fmt.Errorf("squashfs: more than %d distinct uids and gids: the image cannot hold them (use all-root ownership or fewer owners)", maxIDs)
	}
	i := uint16(len(nb.p.ids))
	nb.ids[v] = i
	nb.p.ids = append(nb.p.ids, v)
	return i, nil
}

// inode makes the (not yet numbered) inode of n.
func (nb *numberer) inode(n *Node, pth string) (*inode, error) {
	o := nb.p.opts
	ino := &inode{typ: n.Type, node: n, path: pth, nlink: 1, perm: n.Perm & 0o7777, mtime: clampTime(n.Mtime)}
	if n.Xattrs {
		if nb.p.stats.XattrFiles == 0 {
			nb.p.stats.XattrExample = pth
		}
		nb.p.stats.XattrFiles++
	}
	if !o.AllTime.IsZero() {
		ino.mtime = clampTime(o.AllTime.Unix())
	}
	uid, gid := n.UID, n.GID
	if o.AllRoot {
		uid, gid = 0, 0
	}
	var err error
	if ino.uid, err = nb.id(uid); err != nil {
		return nil, err
	}
	if ino.gid, err = nb.id(gid); err != nil {
		return nil, err
	}
	switch n.Type {
	case TypeDir, TypeBlockDev, TypeCharDev, TypeFifo, TypeSocket:
	case TypeSymlink:
		if len(n.Target) >= 1<<16 {
			return nil, fmt.Errorf("squashfs: %s: symlink target longer than 65535 bytes", pth)
		}
	case TypeFile:
		if n.Size < 0 || n.Content != nil && int64(len(n.Content)) != n.Size {
			return nil, fmt.Errorf("squashfs: %s: size %d does not match its content (%d bytes)", pth, n.Size, len(n.Content))
		}
		if n.Content == nil && n.HostPath == "" && n.Size > 0 {
			return nil, fmt.Errorf("squashfs: %s: file has neither content nor a host path", pth)
		}
		ino.data = &fileData{node: n, path: pth, size: n.Size, frag: -1, unit: nb.unit}
		if u := nb.unit; u != nil && n.Size > 0 {
			u.inodes = append(u.inodes, ino)
		}
	default:
		return nil, fmt.Errorf("squashfs: %s: unknown node type %d", pth, n.Type)
	}
	return ino, nil
}

// walk numbers the entries of directory d and, recursively, below them.
func (nb *numberer) walk(d *inode) error {
	p := nb.p
	if nb.dirs[d.node] {
		return fmt.Errorf("squashfs: %s: the same directory node appears twice in the tree", d.path)
	}
	nb.dirs[d.node] = true
	kids := slices.Clone(d.node.Children)
	slices.SortFunc(kids, func(a, b *Node) int { return strings.Compare(a.Name, b.Name) })
	d.entries = make([]entry, 0, len(kids))
	d.nlink = 2
	for i, k := range kids {
		pth := path.Join(d.path, k.Name)
		if err := checkName(k.Name); err != nil {
			return fmt.Errorf("%s: %w", pth, err)
		}
		if i > 0 && kids[i-1].Name == k.Name {
			return fmt.Errorf("squashfs: %s: two entries with this name", pth)
		}
		linked := k.Link != (LinkID{}) && k.Type != TypeDir && !p.opts.NoHardlinks
		if ino, ok := nb.links[k.Link]; ok && linked {
			ino.nlink++
			d.entries = append(d.entries, entry{k.Name, ino})
			continue
		}
		startsUnit := k.Unit != "" && nb.unit == nil
		if startsUnit {
			nb.unit = &unitPlan{name: k.Unit, path: pth}
		}
		ino, err := nb.inode(k, pth)
		if err != nil {
			return err
		}
		p.inodes = append(p.inodes, ino)
		ino.num = uint32(len(p.inodes))
		if linked {
			nb.links[k.Link] = ino
		}
		d.entries = append(d.entries, entry{k.Name, ino})
		if k.Type == TypeDir {
			d.nlink++
			ino.parent = d
			if err := nb.walk(ino); err != nil {
				return err
			}
		}
		if startsUnit {
			if len(nb.unit.inodes) > 0 {
				p.units = append(p.units, nb.unit)
			}
			nb.unit = nil
		}
	}
	return nil
}

// layoutData finds duplicate files and decides block and fragment
// placement. Files outside units share fragments; each unit's files share
// fragments of their own, written before the unit ends.
func (p *Plan) layoutData(ctx context.Context) error {
	var files []*fileData
	for _, ino := range p.inodes {
		if ino.data != nil && ino.data.size > 0 {
			files = append(files, ino.data)
		}
	}
	if !p.opts.NoDuplicates {
		if err := p.dedup(ctx, files); err != nil {
			return err
		}
	}
	bs := int64(p.blockSize)
	globalCur, unitCur := -1, -1
	var unit *unitPlan
	endUnit := func() {
		if unit == nil {
			return
		}
		if unitCur >= 0 {
			p.items = append(p.items, item{frag: unitCur})
		}
		p.items = append(p.items, item{frag: -1, end: unit})
		unit, unitCur = nil, -1
	}
	for _, ino := range p.inodes {
		f := ino.data
		if f == nil || f.size == 0 || f.placed {
			continue // empty, or placed already (a duplicate)
		}
		f.placed = true
		if f.unit != unit {
			endUnit()
			if f.unit != nil {
				unit = f.unit
				p.items = append(p.items, item{frag: -1, start: unit})
			}
		}
		cur := &globalCur
		if unit != nil {
			cur = &unitCur
		}
		f.blocks = int(f.size / bs)
		tail := int(f.size % bs)
		if tail > 0 && p.opts.NoFragments {
			f.blocks++
		} else if tail > 0 {
			if *cur < 0 || p.frags[*cur].used+tail > p.blockSize {
				if *cur >= 0 {
					p.items = append(p.items, item{frag: *cur})
				}
				p.frags = append(p.frags, &frag{})
				*cur = len(p.frags) - 1
			}
			f.frag, f.fragAt = *cur, p.frags[*cur].used
			p.frags[*cur].used += tail
		}
		if f.blocksFrom != nil && f.blocks == 0 {
			f.blocksFrom = nil // nothing to share but the tail
		}
		if f.blocksFrom != nil {
			p.stats.Duplicates++
			p.stats.DuplicateBytes += min(f.size, int64(f.blocks)*bs)
		}
		f.id = p.nfiles
		p.nfiles++
		p.items = append(p.items, item{file: f, frag: -1})
	}
	endUnit()
	if globalCur >= 0 {
		p.items = append(p.items, item{frag: globalCur})
	}
	p.stats.Fragments = len(p.frags)
	p.stats.Units = len(p.units)
	return nil
}

// dedup points the inodes of files identical to an earlier file at the
// earlier file's data. Only files whose size matches another's are read:
// first their first prefixLen bytes, then, for those still alike, all of
// them; files whose whole hash is known (from the cache) are not read, and
// their size group is then hashed whole. Inside a unit (and outside all
// units) a duplicate shares the earlier file's data; the first copy in a
// unit of a file from elsewhere shares only its data blocks (blocksFrom).
func (p *Plan) dedup(ctx context.Context, files []*fileData) error {
	const prefixLen = 64 << 10
	// groups returns the groups of more than one file with the same key,
	// in order of their first file.
	groups := func(fs []*fileData, key func(*fileData) string) [][]*fileData {
		byKey := map[string][]*fileData{}
		var keys []string
		for _, f := range fs {
			k := key(f)
			if byKey[k] == nil {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], f)
		}
		var out [][]*fileData
		for _, k := range keys {
			if len(byKey[k]) > 1 {
				out = append(out, byKey[k])
			}
		}
		return out
	}
	bySize := func(f *fileData) string { return fmt.Sprint(f.size) }
	byHash := func(f *fileData) string { return fmt.Sprint(f.size, "/", string(f.hash)) }
	var prefix, whole []*fileData
	for _, g := range groups(files, bySize) {
		known := slices.ContainsFunc(g, func(f *fileData) bool { return f.full })
		for _, f := range g {
			switch {
			case f.full:
			case f.size <= prefixLen || known:
				whole = append(whole, f)
			default:
				prefix = append(prefix, f)
			}
		}
	}
	if err := hashAll(ctx, prefix, p.opts.Processors, prefixLen); err != nil {
		return err
	}
	for _, g := range groups(prefix, byHash) {
		whole = append(whole, g...)
	}
	for _, f := range prefix {
		f.hash = nil // a prefix hash is not the file's hash
	}
	if err := hashAll(ctx, whole, p.opts.Processors, -1); err != nil {
		return err
	}
	for _, f := range whole {
		f.full = true
	}
	var hashed []*fileData
	for _, f := range files {
		if f.full {
			hashed = append(hashed, f)
		}
	}
	same := map[*fileData]*fileData{}
	for _, g := range groups(hashed, byHash) {
		firstIn := map[*unitPlan]*fileData{g[0].unit: g[0]}
		for _, f := range g[1:] {
			if f.unit == nil {
				same[f] = g[0]
				continue
			}
			if first, ok := firstIn[f.unit]; ok {
				same[f] = first
				continue
			}
			firstIn[f.unit] = f
			f.blocksFrom = g[0]
		}
	}
	for _, ino := range p.inodes {
		if first, ok := same[ino.data]; ok {
			p.stats.Duplicates++
			p.stats.DuplicateBytes += ino.data.size
			ino.data = first
		}
	}
	return nil
}

// hashAll sets the sha256 of the first limit bytes (all if limit < 0) of
// each file, on workers goroutines.
func hashAll(ctx context.Context, files []*fileData, workers int, limit int64) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     int
	)
	for range min(workers, len(files)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for {
				mu.Lock()
				if firstErr != nil || next == len(files) {
					mu.Unlock()
					return
				}
				f := files[next]
				next++
				mu.Unlock()
				err := ctx.Err()
				if err == nil {
					f.hash, err = hashFile(f, buf, limit)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func hashFile(f *fileData, buf []byte, limit int64) ([]byte, error) {
	want := f.size
	if limit >= 0 {
		want = min(f.size, limit)
	}
	h := sha256.New()
	if f.node.Content != nil {
		h.Write(f.node.Content[:want])
		return h.Sum(nil), nil
	}
	r, err := os.Open(f.node.HostPath)
	if err != nil {
		return nil, fmt.Errorf("squashfs: %s: %w", f.path, err)
	}
	defer r.Close()
	upTo := want
	if want == f.size {
		upTo++ // one byte more, to see the file has not grown
	}
	n, err := io.CopyBuffer(h, io.LimitReader(r, upTo), buf)
	if err != nil {
		return nil, fmt.Errorf("squashfs: %s: read %s: %w", f.path, f.node.HostPath, err)
	}
	if n != want {
		return nil, fmt.Errorf("squashfs: %s: file changed size while read (it was %d bytes): %w", f.path, f.size, ErrChanged)
	}
	return h.Sum(nil), nil
}

// ErrChanged is returned (wrapped) when a file changes while it is read.
var ErrChanged = errors.New("squashfs: file changed while the image was written")
