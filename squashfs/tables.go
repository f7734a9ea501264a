package squashfs

import (
	"encoding/binary"
	"fmt"
)

// metaWriter builds a table of metadata blocks in memory.
type metaWriter struct {
	enc encoder
	out []byte // finished blocks
	buf []byte // pending bytes of the current block
	tmp []byte
}

// pos returns the position of the next byte: the start of its block
// relative to the table, and its offset in the block.
func (m *metaWriter) pos() (uint64, uint16) { return uint64(len(m.out)), uint16(len(m.buf)) }

func (m *metaWriter) ref() uint64 {
	b, o := m.pos()
	return b<<16 | uint64(o)
}

func (m *metaWriter) write(b []byte) error {
	m.buf = append(m.buf, b...)
	for len(m.buf) >= metaSize {
		if err := m.flushBlock(m.buf[:metaSize]); err != nil {
			return err
		}
		m.buf = append(m.buf[:0], m.buf[metaSize:]...)
	}
	return nil
}

func (m *metaWriter) flushBlock(b []byte) error {
	if m.enc != nil {
		c, err := m.enc.compress(m.tmp, b)
		if err != nil {
			return fmt.Errorf("squashfs: compress metadata: %w", err)
		}
		m.tmp = c
		if len(c) < len(b) {
			m.out = binary.LittleEndian.AppendUint16(m.out, uint16(len(c)))
			m.out = append(m.out, c...)
			return nil
		}
	}
	m.out = binary.LittleEndian.AppendUint16(m.out, uint16(len(b))|metaRaw)
	m.out = append(m.out, b...)
	return nil
}

func (m *metaWriter) finish() ([]byte, error) {
	if len(m.buf) > 0 {
		if err := m.flushBlock(m.buf); err != nil {
			return nil, err
		}
		m.buf = m.buf[:0]
	}
	return m.out, nil
}

type le []byte

func (b le) u16(v uint16) le { return binary.LittleEndian.AppendUint16(b, v) }
func (b le) u32(v uint32) le { return binary.LittleEndian.AppendUint32(b, v) }
func (b le) u64(v uint64) le { return binary.LittleEndian.AppendUint64(b, v) }

// tables holds the inode and directory tables while they are built.
type tables struct {
	*writer
	inodes metaWriter
	dirs   metaWriter
}

// writeTables writes the metadata after the data and returns the
// superblock.
func (iw *writer) writeTables(out *countWriter, enc encoder) ([]byte, error) {
	p := iw.p
	t := &tables{writer: iw, inodes: metaWriter{enc: enc}, dirs: metaWriter{enc: enc}}
	if err := t.writeDir(p.root); err != nil {
		return nil, err
	}
	itab, err := t.inodes.finish()
	if err != nil {
		return nil, err
	}
	dtab, err := t.dirs.finish()
	if err != nil {
		return nil, err
	}
	inodeStart := out.pos
	out.Write(itab)
	dirStart := out.pos
	out.Write(dtab)

	var fragTab le
	for _, f := range iw.frags {
		fragTab = fragTab.u64(f.start).u32(f.size).u32(0)
	}
	fragStart, err := writeLookup(out, enc, fragTab)
	if err != nil {
		return nil, err
	}
	var exp le
	for _, ref := range iw.refs {
		exp = exp.u64(ref)
	}
	exportStart, err := writeLookup(out, enc, exp)
	if err != nil {
		return nil, err
	}
	var ids le
	for _, id := range p.ids {
		ids = ids.u32(id)
	}
	idStart, err := writeLookup(out, enc, ids)
	if err != nil {
		return nil, err
	}

	flags := uint16(flagExportable | flagNoXattrs)
	if !p.opts.NoDuplicates {
		flags |= flagDuplicates
	}
	if p.opts.NoFragments {
		flags |= flagNoFragments
	} else {
		flags |= flagAlwaysFrags
	}
	if _, none := p.comp.codec().(noneCodec); none {
		// As mksquashfs -noI -noId -noD -noF -noX records it.
		flags |= flagNoInodeComp | flagNoDataComp | flagNoFragComp | flagNoXattrComp
	}
	if p.comp.options(p.blockSize) != nil {
		flags |= flagCompOpts
	}
	blockLog := uint16(0)
	for 1<<blockLog < p.blockSize {
		blockLog++
	}
	sb := le(nil).u32(magic).u32(uint32(len(p.inodes))).u32(p.mkfsTime).u32(uint32(p.blockSize)).
		u32(uint32(len(p.frags))).u16(p.comp.id()).u16(blockLog).u16(flags).u16(uint16(len(p.ids))).
		u16(4).u16(0).u64(iw.refs[p.root.num-1]).u64(out.pos).u64(idStart).u64(invalidTable).
		u64(inodeStart).u64(dirStart).u64(fragStart).u64(exportStart)
	return sb, nil
}

// writeLookup writes a lookup table: its entries in metadata blocks, then
// the positions of those blocks. It returns the position of the latter.
func writeLookup(out *countWriter, enc encoder, entries []byte) (uint64, error) {
	var index le
	for len(entries) > 0 {
		n := min(len(entries), metaSize)
		index = index.u64(out.pos)
		m := metaWriter{enc: enc}
		if err := m.flushBlock(entries[:n]); err != nil {
			return 0, err
		}
		out.Write(m.out)
		entries = entries[n:]
	}
	start := out.pos
	_, err := out.Write(index)
	return start, err
}

// writeDir writes the inodes below d, d's listing and d's inode
// (children first, so that the listing can refer to them).
func (t *tables) writeDir(d *inode) error {
	for _, e := range d.entries {
		if t.done[e.ino.num-1] {
			continue
		}
		if e.ino.typ == TypeDir {
			if err := t.writeDir(e.ino); err != nil {
				return err
			}
		} else if err := t.writeInode(e.ino); err != nil {
			return err
		}
	}
	listing, index := dirListing(d.entries, t.refs)
	startBlock, startOff := t.dirs.pos()
	// Index entries name the directory-table block that holds the header
	// they point at.
	var idx le
	at := 0
	for _, ix := range index {
		if err := t.dirs.write(listing[at:ix.offset]); err != nil {
			return err
		}
		at = ix.offset
		blk, _ := t.dirs.pos()
		idx = idx.u32(uint32(ix.offset)).u32(uint32(blk)).u32(uint32(len(ix.name) - 1))
		idx = append(idx, ix.name...)
	}
	if err := t.dirs.write(listing[at:]); err != nil {
		return err
	}
	parent := uint32(len(t.refs) + 1)
	if d.parent != nil {
		parent = d.parent.num
	}
	size := len(listing) + 3
	// mksquashfs's rule: an extended inode for more than 256 entries or
	// entries of 8 KiB or more (before headers).
	entryBytes := 0
	for _, e := range d.entries {
		entryBytes += 8 + len(e.name)
	}
	var b le
	if len(d.entries) <= 256 && entryBytes < metaSize && len(index) == 0 && size < 1<<16 {
		b = t.header(d, inoDir).u32(uint32(startBlock)).u32(d.nlink).u16(uint16(size)).u16(startOff).u32(parent)
	} else {
		b = t.header(d, inoLDir).u32(d.nlink).u32(uint32(size)).u32(uint32(startBlock)).u32(parent).
			u16(uint16(len(index))).u16(startOff).u32(noXattr)
		b = append(b, idx...)
	}
	t.refs[d.num-1] = t.inodes.ref()
	t.done[d.num-1] = true
	return t.inodes.write(b)
}

func (t *tables) header(ino *inode, typ uint16) le {
	return le(nil).u16(typ).u16(ino.perm).u16(ino.uid).u16(ino.gid).u32(ino.mtime).u32(ino.num)
}

func (t *tables) writeInode(ino *inode) error {
	var b le
	n := ino.node
	switch ino.typ {
	case TypeFile:
		f := ino.data
		var pf placedFile
		if f.size > 0 {
			pf = t.files[f.id]
		}
		if f.blocksFrom != nil {
			pf = t.files[f.blocksFrom.id]
		}
		frag, fragAt := uint32(noFragment), uint32(0)
		if f.frag >= 0 {
			frag, fragAt = uint32(f.frag), uint32(f.fragAt)
		}
		// Like mksquashfs, report holes only for files with holes.
		sparse := uint64(0)
		if n.Holes && pf.sparse > 0 {
			sparse = min(pf.sparse, uint64(f.size)-1)
		}
		if ino.nlink == 1 && pf.start < 1<<32 && f.size < 1<<32 && sparse == 0 {
			b = t.header(ino, inoFile).u32(uint32(pf.start)).u32(frag).u32(fragAt).u32(uint32(f.size))
		} else {
			b = t.header(ino, inoLFile).u64(pf.start).u64(uint64(f.size)).u64(sparse).
				u32(ino.nlink).u32(frag).u32(fragAt).u32(noXattr)
		}
		for _, s := range pf.sizes {
			b = b.u32(s)
		}
	case TypeSymlink:
		b = t.header(ino, inoSymlink).u32(ino.nlink).u32(uint32(len(n.Target)))
		b = append(b, n.Target...)
	case TypeBlockDev, TypeCharDev:
		dev := n.Major&0xfff<<8 | n.Minor&0xff | (n.Minor&^0xff)<<12
		b = t.header(ino, basicType(ino.typ)).u32(ino.nlink).u32(dev)
	case TypeFifo, TypeSocket:
		b = t.header(ino, basicType(ino.typ)).u32(ino.nlink)
	}
	t.refs[ino.num-1] = t.inodes.ref()
	t.done[ino.num-1] = true
	return t.inodes.write(b)
}

type dirIndex struct {
	offset int
	name   string
}

// dirListing encodes a directory's entries the way mksquashfs does: a new
// header every 256 entries, when the inode block changes, when an inode
// number is too far from the header's, and when the listing since the last
// index point would pass a metadata block (which also adds an index entry).
func dirListing(entries []entry, refs []uint64) ([]byte, []dirIndex) {
	var (
		b         le
		index     []dirIndex
		hdrAt     = -1
		count     = 256
		hdrBlock  uint32
		hdrNum    uint32
		lastIndex = 0
	)
	for _, e := range entries {
		ref := refs[e.ino.num-1]
		blk := uint32(ref >> 16)
		off := uint16(ref)
		delta := int64(e.ino.num) - int64(hdrNum)
		grow := len(b) + 8 + len(e.name) - lastIndex
		if count == 256 || blk != hdrBlock || hdrAt >= 0 && grow > metaSize || delta > 32767 || delta < -32768 {
			if hdrAt >= 0 {
				if grow > metaSize {
					index = append(index, dirIndex{offset: len(b), name: e.name})
					lastIndex = len(b)
				}
				binary.LittleEndian.PutUint32(b[hdrAt:], uint32(count-1))
			}
			hdrAt, count, hdrBlock, hdrNum = len(b), 0, blk, e.ino.num
			b = b.u32(0).u32(blk).u32(hdrNum)
			delta = 0
		}
		b = b.u16(off).u16(uint16(int16(delta))).u16(basicType(e.ino.typ)).u16(uint16(len(e.name) - 1))
		b = append(b, e.name...)
		count++
	}
	if hdrAt >= 0 {
		binary.LittleEndian.PutUint32(b[hdrAt:], uint32(count-1))
	}
	return b, index
}
