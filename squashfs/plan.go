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
	// RootMode, when not zero, replaces the root directory's permissions.
	RootMode uint16

	NoFragments  bool // store tails as short blocks instead of packing them into fragments
	NoDuplicates bool // store identical files twice
	NoHardlinks  bool // make each hard link an inode of its own

	// Progress, when set, is called from one goroutine after each block
	// is written.
	Progress func(Progress)
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
	id     int    // index of its placement while writing
}

type frag struct {
	used int // bytes of tails
}

// item is one step of the data area: a file's blocks (and tail), or the
// writing of a complete fragment block.
type item struct {
	file *fileData
	frag int
}

const maxIDs = 1 << 16

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
	if err := p.layoutData(ctx); err != nil {
		return nil, err
	}
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
	if p.opts.RootMode != 0 {
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
}

// id returns the id table index of a uid or gid, adding it if new.
func (nb *numberer) id(v uint32) (uint16, error) {
	if i, ok := nb.ids[v]; ok {
		return i, nil
	}
	if len(nb.p.ids) == maxIDs {
		return 0, fmt.Errorf("squashfs: more than %d distinct uids and gids", maxIDs)
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
		ino.data = &fileData{node: n, path: pth, size: n.Size, frag: -1}
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
	}
	return nil
}

// layoutData finds duplicate files and decides block and fragment placement.
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
	cur := -1
	for _, ino := range p.inodes {
		f := ino.data
		if f == nil || f.size == 0 || f.blocks != 0 || f.frag >= 0 {
			continue // empty, or placed already (a duplicate)
		}
		f.blocks = int(f.size / bs)
		tail := int(f.size % bs)
		if tail > 0 && p.opts.NoFragments {
			f.blocks++
		} else if tail > 0 {
			if cur < 0 || p.frags[cur].used+tail > p.blockSize {
				if cur >= 0 {
					p.items = append(p.items, item{frag: cur})
				}
				p.frags = append(p.frags, &frag{})
				cur = len(p.frags) - 1
			}
			f.frag, f.fragAt = cur, p.frags[cur].used
			p.frags[cur].used += tail
		}
		f.id = p.nfiles
		p.nfiles++
		p.items = append(p.items, item{file: f, frag: -1})
	}
	if cur >= 0 {
		p.items = append(p.items, item{frag: cur})
	}
	p.stats.Fragments = len(p.frags)
	return nil
}

// dedup points the inodes of files identical to an earlier file at the
// earlier file's data. Only files whose size matches another's are read:
// first their first prefixLen bytes, then, for those still alike, all of
// them.
func (p *Plan) dedup(ctx context.Context, files []*fileData) error {
	const prefixLen = 64 << 10
	alike := func(fs []*fileData) [][]*fileData {
		groups := map[string][]*fileData{}
		var keys []string
		for _, f := range fs {
			k := fmt.Sprint(f.size, "/", string(f.hash))
			if groups[k] == nil {
				keys = append(keys, k)
			}
			groups[k] = append(groups[k], f)
		}
		var out [][]*fileData
		for _, k := range keys {
			if len(groups[k]) > 1 {
				out = append(out, groups[k])
			}
		}
		return out
	}
	var todo []*fileData
	for _, g := range alike(files) { // by size
		todo = append(todo, g...)
	}
	if err := hashAll(ctx, todo, p.opts.Processors, prefixLen); err != nil {
		return err
	}
	var full []*fileData
	for _, g := range alike(todo) { // by size and prefix
		if g[0].size > prefixLen {
			full = append(full, g...)
		}
	}
	for _, f := range todo {
		if f.size > prefixLen {
			f.hash = nil // a prefix hash is not the file's hash
		}
	}
	if err := hashAll(ctx, full, p.opts.Processors, -1); err != nil {
		return err
	}
	same := map[*fileData]*fileData{}
	for _, g := range alike(todo) {
		if g[0].hash == nil {
			continue
		}
		for _, f := range g[1:] {
			same[f] = g[0]
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
