package squashfs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
)

// Write lays out t and writes the image to w, starting at w's current
// offset. It is NewPlan followed by Plan.Write.
func Write(ctx context.Context, w io.WriteSeeker, t *Tree, opts Options) (Stats, error) {
	p, err := NewPlan(ctx, t, opts)
	if err != nil {
		return Stats{}, err
	}
	return p.Write(ctx, w)
}

const (
	magic        = 0x73717368
	superSize    = 96
	metaSize     = 8192
	metaRaw      = 1 << 15 // metadata header bit: stored uncompressed
	dataRaw      = 1 << 24 // data block size bit: stored uncompressed
	noFragment   = 0xffffffff
	noXattr      = 0xffffffff
	invalidTable = 0xffffffffffffffff

	flagNoInodeComp = 0x0001
	flagNoDataComp  = 0x0002
	flagNoFragComp  = 0x0008
	flagNoFragments = 0x0010
	flagAlwaysFrags = 0x0020
	flagDuplicates  = 0x0040
	flagExportable  = 0x0080
	flagNoXattrComp = 0x0100
	flagNoXattrs    = 0x0200
	flagCompOpts    = 0x0400
)

// On-disk inode types.
const (
	inoDir = iota + 1
	inoFile
	inoSymlink
	inoBlock
	inoChar
	inoFifo
	inoSocket
	inoLDir
	inoLFile
)

func basicType(t Type) uint16 {
	switch t {
	case TypeDir:
		return inoDir
	case TypeFile:
		return inoFile
	case TypeSymlink:
		return inoSymlink
	case TypeBlockDev:
		return inoBlock
	case TypeCharDev:
		return inoChar
	case TypeFifo:
		return inoFifo
	}
	return inoSocket
}

// countWriter tracks the image position.
type countWriter struct {
	w   *bufio.Writer
	pos uint64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.pos += uint64(n)
	return n, err
}

// placedFile is where a file's data went in one image.
type placedFile struct {
	start  uint64
	sizes  []uint32
	sparse uint64 // bytes in all-zero blocks not stored
}

type placedFrag struct {
	start uint64
	size  uint32
}

// writer holds what one Write learns about the image: where blocks went
// and where inodes are.
type writer struct {
	p     *Plan
	files []placedFile // by fileData.id
	frags []placedFrag
	refs  []uint64 // inode references, by inode number - 1
	done  []bool   // inode written, by inode number - 1
	stats Stats

	// Cache: the sha256 of files read for an entry (by fileData.id, set
	// by the reader before the unit's end passes), the entry being
	// written, and whether the cache refused one.
	hashes   [][]byte
	rec      *unitRecord
	noRecord bool
}

// Write carries out the plan: it reads and compresses the data on
// Options.Processors workers, writes it in plan order, then writes the
// metadata tables and finally the superblock.
func (p *Plan) Write(ctx context.Context, w io.WriteSeeker) (Stats, error) {
	iw := &writer{
		p:     p,
		files: make([]placedFile, p.nfiles),
		frags: make([]placedFrag, len(p.frags)),
		refs:  make([]uint64, len(p.inodes)),
		done:  make([]bool, len(p.inodes)),
		stats: p.stats,
	}
	if p.opts.Cache != nil {
		iw.hashes = make([][]byte, p.nfiles)
	}
	return iw.write(ctx, w)
}

func (iw *writer) write(ctx context.Context, w io.WriteSeeker) (Stats, error) {
	p := iw.p
	base, err := w.Seek(0, io.SeekCurrent)
	if err != nil {
		return Stats{}, fmt.Errorf("squashfs: %w", err)
	}
	out := &countWriter{w: bufio.NewWriterSize(w, 1<<20)}
	if _, err := out.Write(make([]byte, superSize)); err != nil {
		return Stats{}, fmt.Errorf("squashfs: %w", err)
	}
	enc, err := p.comp.newEncoder(p.blockSize)
	if err != nil {
		return Stats{}, fmt.Errorf("squashfs: %w", err)
	}
	opts := p.comp.options(p.blockSize)
	if opts != nil {
		hdr := binary.LittleEndian.AppendUint16(nil, uint16(len(opts))|metaRaw)
		out.Write(hdr)
		out.Write(opts)
	}
	if err := iw.writeData(ctx, out); err != nil {
		return Stats{}, err
	}
	sb, err := iw.writeTables(out, enc)
	if err != nil {
		return Stats{}, err
	}
	if pad := out.pos % 4096; pad != 0 {
		out.Write(make([]byte, 4096-pad))
	}
	if err := out.w.Flush(); err != nil {
		return Stats{}, fmt.Errorf("squashfs: %w", err)
	}
	end := out.pos
	if _, err := w.Seek(base, io.SeekStart); err != nil {
		return Stats{}, fmt.Errorf("squashfs: %w", err)
	}
	if _, err := w.Write(sb); err != nil {
		return Stats{}, fmt.Errorf("squashfs: %w", err)
	}
	if _, err := w.Seek(base+int64(end), io.SeekStart); err != nil {
		return Stats{}, fmt.Errorf("squashfs: %w", err)
	}
	iw.stats.OutputBytes = int64(end)
	return iw.stats, nil
}

// job is one block on its way from the reader through a worker to the
// writer, or the start or end of a unit.
type job struct {
	seq    int
	file   *fileData // data block of file, or
	frag   int       // fragment block index (file == nil)
	buf    []byte    // the block
	out    []byte    // its compressed form, when smaller
	raw    bool
	sparse bool
	err    error
	// progress to report once this block is written
	nbytes int64
	nfiles int

	start, end *unitPlan // a unit's start or end (no block)
	record     bool      // start: store the unit in the cache
	hit        bool      // start: the unit comes from the cache
	damaged    string    // start: why its planned entry cannot be used
	cacheOnly  bool      // the block goes into the cache entry only
	pre        bool      // out is the stored form from the cache, word its size
	word       uint32
	plain      int64 // length of a block from the cache
}

func (iw *writer) writeData(ctx context.Context, out *countWriter) error {
	p := iw.p
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := p.opts.Processors
	window := 2*workers + 2
	pool := make(chan *job, window)
	for range window {
		pool <- &job{buf: make([]byte, 0, p.blockSize)}
	}
	jobs := make(chan *job, window)
	results := make(chan *job, window)

	encs := make([]encoder, workers)
	for i := range encs {
		var err error
		if encs[i], err = p.comp.newEncoder(p.blockSize); err != nil {
			return fmt.Errorf("squashfs: %w", err)
		}
	}
	var readErr error
	go func() {
		readErr = iw.read(ctx, pool, jobs)
		close(jobs)
	}()
	var wg sync.WaitGroup
	zero := make([]byte, p.blockSize)
	for _, enc := range encs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if j.start == nil && j.end == nil && !j.pre {
					compressJob(j, enc, zero)
				}
				results <- j
			}
		}()
	}
	go func() {
		wg.Wait()
		close(results)
	}()

	var (
		err     error
		next    int
		pending = map[int]*job{}
		prog    Progress
	)
	prog.TotalBytes = p.stats.InputBytes - p.stats.DuplicateBytes
	for _, it := range p.items {
		if it.file != nil {
			prog.TotalFiles++
		}
	}
	for j := range results {
		pending[j.seq] = j
		for {
			j, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			if err == nil {
				err = iw.place(out, j, &prog)
				if err != nil {
					cancel()
				}
			}
			j.start, j.end, j.record, j.hit, j.damaged, j.cacheOnly, j.pre = nil, nil, false, false, "", false, false
			j.buf, j.out = j.buf[:0], j.out[:0]
			pool <- j
		}
	}
	if iw.rec != nil {
		iw.rec.w.Abort()
		iw.rec = nil
	}
	// A failed write cancels the reader, whose error is then only that:
	// report the write's.
	if err != nil {
		return err
	}
	if readErr != nil {
		return readErr
	}
	if p.opts.Progress != nil {
		prog.Bytes, prog.Files = prog.TotalBytes, prog.TotalFiles
		p.opts.Progress(prog)
	}
	return err
}

func compressJob(j *job, enc encoder, zero []byte) {
	j.raw, j.sparse, j.err = false, false, nil
	if j.file != nil && bytes.Equal(j.buf, zero[:len(j.buf)]) {
		j.sparse = true
		return
	}
	if enc == nil {
		j.raw = true
		return
	}
	out, err := enc.compress(j.out, j.buf)
	if err != nil {
		j.err = err
		return
	}
	j.out = out
	j.raw = len(out) >= len(j.buf)
}

// place writes a finished block and records where it went.
func (iw *writer) place(out *countWriter, j *job, prog *Progress) error {
	prog.Bytes += j.nbytes
	prog.Files += j.nfiles
	switch {
	case j.start != nil:
		iw.startUnit(j)
		return nil
	case j.end != nil:
		iw.endUnit(j.end)
		return nil
	}
	if j.err != nil {
		name := fmt.Sprintf("fragment %d", j.frag)
		if j.file != nil {
			name = j.file.path
		}
		return fmt.Errorf("squashfs: compress %s: %w", name, j.err)
	}
	size := uint32(0)
	var data []byte
	plain := int64(len(j.buf))
	switch {
	case j.pre:
		size, data, plain = j.word, j.out, j.plain
		j.sparse = size == 0 && j.file != nil
		iw.stats.CacheReadBytes += int64(len(data))
	case j.sparse:
	case j.raw:
		size, data = uint32(len(j.buf))|dataRaw, j.buf
	default:
		size, data = uint32(len(j.out)), j.out
	}
	if iw.rec != nil {
		iw.rec.add(size, data)
	}
	if j.cacheOnly {
		return nil
	}
	start := out.pos
	if _, err := out.Write(data); err != nil {
		return fmt.Errorf("squashfs: %w", err)
	}
	if j.sparse {
		iw.stats.SparseBlocks++
	}
	if iw.p.opts.Progress != nil {
		iw.p.opts.Progress(*prog)
	}
	if j.file == nil {
		iw.frags[j.frag] = placedFrag{start, size}
		return nil
	}
	if !j.sparse {
		iw.stats.DataBlocks++
	}
	f := &iw.files[j.file.id]
	if len(f.sizes) == 0 {
		f.start = start
	}
	f.sizes = append(f.sizes, size)
	if j.sparse {
		f.sparse += uint64(plain)
	}
	return nil
}

// startUnit counts a unit and, when asked to, starts its cache entry.
func (iw *writer) startUnit(j *job) {
	u := j.start
	if j.damaged != "" {
		iw.stats.CacheDamaged++
		iw.p.warn(j.damaged)
	}
	if j.hit {
		iw.stats.CacheHits++
		iw.stats.CacheReusedBytes += u.bytes
	} else if iw.p.opts.Cache != nil {
		iw.stats.CacheMisses++
	}
	if !j.record || iw.noRecord {
		return
	}
	w, err := iw.p.opts.Cache.Put(u.key)
	if err != nil {
		// A read-only cache is used, not written: say so once.
		iw.noRecord = true
		iw.p.warn(fmt.Sprintf("not storing in the cache: %v", err))
		return
	}
	iw.rec = &unitRecord{u: u, w: w}
}

// endUnit commits the unit's cache entry, if one is being written.
func (iw *writer) endUnit(u *unitPlan) {
	r := iw.rec
	if r == nil || r.u != u {
		return
	}
	iw.rec = nil
	err := r.finish(func(f *fileData) []byte {
		if f.full {
			return f.hash
		}
		return iw.hashes[f.id]
	})
	if err != nil {
		iw.p.warn(fmt.Sprintf("cache entry of %s not stored: %v", u.path, err))
		return
	}
	iw.stats.CacheStored++
}

// read produces the blocks in plan order.
func (iw *writer) read(ctx context.Context, pool <-chan *job, jobs chan<- *job) error {
	p := iw.p
	seq := 0
	var nbytes int64
	var nfiles int
	get := func() (*job, error) {
		select {
		case j := <-pool:
			return j, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	send := func(j *job) {
		j.seq = seq
		seq++
		switch {
		case j.pre && j.file != nil:
			nbytes += j.plain
		case j.file != nil && !j.cacheOnly:
			nbytes += int64(len(j.buf))
		}
		j.nbytes, j.nfiles = nbytes, nfiles
		nbytes, nfiles = 0, 0
		jobs <- j
	}
	open := map[int]*job{} // fragment blocks being filled
	var (
		unit   *unitPlan  // the current unit
		hit    CacheEntry // the entry it comes from
		words  int        // blocks of it used so far
		record bool
	)
	defer func() {
		if hit != nil {
			hit.Close()
		}
	}()
	// fromCache sends the next block of the entry (unless skip).
	fromCache := func(u *unitPlan, f *fileData, frag int, plain int64, skip bool) error {
		t := u.entry
		w, off := t.words[words], t.offs[words]
		words++
		if skip {
			return nil
		}
		j, err := get()
		if err != nil {
			return err
		}
		j.file, j.frag, j.pre, j.word, j.plain = f, frag, true, w, plain
		n := int(w &^ dataRaw)
		if cap(j.out) < n {
			j.out = make([]byte, p.blockSize)
		}
		j.out = j.out[:n]
		if _, err := hit.ReadAt(j.out, off); err != nil {
			return fmt.Errorf("squashfs: read the cache entry of %s: %w", u.path, err)
		}
		send(j)
		return nil
	}
	for _, it := range p.items {
		switch {
		case it.start != nil:
			u := it.start
			unit, hit, words, record = u, nil, 0, p.opts.Cache != nil
			damaged := "" // warned about by the writer, which makes every warning of Write
			if u.entry != nil {
				e, err := p.reopenEntry(u)
				if err == nil {
					hit, record = e, false
				} else {
					damaged = fmt.Sprintf("cache entry of %s ignored, compressing it: %v", u.path, err)
				}
			}
			j, err := get()
			if err != nil {
				return err
			}
			j.file, j.frag, j.start, j.hit, j.record, j.damaged = nil, -1, u, hit != nil, record, damaged
			send(j)
		case it.end != nil:
			if hit != nil {
				hit.Close()
				hit = nil
			}
			j, err := get()
			if err != nil {
				return err
			}
			j.file, j.frag, j.end = nil, -1, it.end
			send(j)
		case it.file == nil && hit != nil:
			if err := fromCache(unit, nil, it.frag, 0, false); err != nil {
				return err
			}
		case it.file == nil:
			send(open[it.frag])
			delete(open, it.frag)
		case hit != nil:
			f := it.file
			for b := range f.blocks {
				if err := fromCache(f.unit, f, -1, p.blockLen(f, b), f.blocksFrom != nil); err != nil {
					return err
				}
			}
			nfiles++
			if f.frag >= 0 {
				nbytes += f.size % int64(p.blockSize)
			}
		default:
			f := it.file
			if f.frag >= 0 && open[f.frag] == nil {
				j, err := get()
				if err != nil {
					return err
				}
				j.file, j.frag, j.buf = nil, f.frag, j.buf[:0]
				open[f.frag] = j
			}
			if err := iw.readFile(f, get, send, open[f.frag], record); err != nil {
				return err
			}
			nfiles++
			if f.frag >= 0 {
				nbytes += f.size % int64(p.blockSize) // the tail, reported with its fragment
			}
		}
	}
	return nil
}

// readFile reads f's blocks and sends them, and puts its tail into
// fragJob. The data blocks of a file that uses an earlier copy's are
// skipped, or read for the cache entry only when record is set.
func (iw *writer) readFile(f *fileData, get func() (*job, error), send func(*job), fragJob *job, record bool) error {
	p := iw.p
	var r io.ReadSeeker
	if f.node.Content != nil {
		r = bytes.NewReader(f.node.Content)
	} else {
		fh, err := os.Open(f.node.HostPath)
		if err != nil {
			return fmt.Errorf("squashfs: %s: %w", f.path, err)
		}
		defer fh.Close()
		r = fh
	}
	skip := f.blocksFrom != nil && !record
	var h hash.Hash
	if !skip && (f.full || record) {
		h = sha256.New()
	}
	changed := func(what string) error {
		return fmt.Errorf("squashfs: %s: %s while the image was written (from %s): %w", f.path, what, f.node.HostPath, ErrChanged)
	}
	left := f.size
	if skip {
		n := min(f.size, int64(f.blocks)*int64(p.blockSize))
		if _, err := r.Seek(n, io.SeekStart); err != nil {
			return fmt.Errorf("squashfs: %s: %w", f.path, err)
		}
		left -= n
	}
	for b := 0; b < f.blocks && !skip; b++ {
		n := min(int64(p.blockSize), left)
		j, err := get()
		if err != nil {
			return err
		}
		j.file, j.frag, j.buf = f, -1, j.buf[:n]
		j.cacheOnly = f.blocksFrom != nil
		if _, err := io.ReadFull(r, j.buf); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return changed("file shrank")
			}
			return fmt.Errorf("squashfs: %s: %w", f.path, err)
		}
		if h != nil {
			h.Write(j.buf)
		}
		left -= n
		send(j)
	}
	if left > 0 {
		// Tails are read in plan order, so each lands where the plan put it.
		fragJob.buf = fragJob.buf[:f.fragAt+int(left)]
		tail := fragJob.buf[f.fragAt:]
		if _, err := io.ReadFull(r, tail); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return changed("file shrank")
			}
			return fmt.Errorf("squashfs: %s: %w", f.path, err)
		}
		if h != nil {
			h.Write(tail)
		}
	}
	var one [1]byte
	if n, _ := r.Read(one[:]); n > 0 {
		return changed("file grew")
	}
	if h == nil {
		return nil
	}
	sum := h.Sum(nil)
	if f.full && !bytes.Equal(sum, f.hash) {
		return changed("file changed")
	}
	if iw.hashes != nil {
		iw.hashes[f.id] = sum
	}
	return nil
}
