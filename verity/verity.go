// Package verity computes dm-verity hash trees: format 1, SHA-256, 4096-byte
// data and hash blocks, with a salt, as the Linux kernel's dm-verity target
// and cryptsetup's veritysetup define them.
//
// The tree is a pure function of the data bytes and the salt. A Writer
// takes the data as a stream (an io.Writer, so it can sit beside the
// squashfs writer in an io.MultiWriter) and, at Close, returns the hash area
// and the root hash. The hash area starts with a veritysetup superblock
// (one 4096-byte block: the tree's parameters, so `veritysetup open` and
// `veritysetup verify --hash-offset` need only the root hash) followed by
// the tree levels, top level first, exactly as `veritysetup format` writes
// them for the same salt and UUID.
//
// Limits: the data must be a whole number of 4096-byte blocks (nbimg pads
// its squashfs images to 4 KiB); only format 1 with SHA-256 is written; the
// tree is held in memory (32 bytes per data block plus 1/128 for the upper
// levels: 32 MiB for a 4 GiB image).
package verity

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
)

// Fixed parameters of the trees this package writes.
const (
	BlockSize     = 4096                                // data and hash block size in bytes
	DigestSize    = sha256.Size                         // bytes per digest
	HashesPerBlk  = BlockSize / DigestSize              // 128 digests per hash block
	Algorithm     = "sha256"                            // the kernel's and veritysetup's name
	HashType      = 1                                   // dm-verity format 1 (salt first)
	SuperblockLen = BlockSize                           // the superblock occupies one hash block
	MaxSaltSize   = 256                                 // the superblock's salt field
	sectorsPerBlk = BlockSize / 512                     // 512-byte sectors per block
	sbSignature   = "verity\x00\x00"                    // superblock magic
	sbVersion     = 1                                   // superblock version
	_             = HashesPerBlk*DigestSize - BlockSize // must be 0: digests fill a block
)

// Errors.
var (
	ErrUnaligned = errors.New("verity: data is not a whole number of 4096-byte blocks")
	ErrEmpty     = errors.New("verity: no data")
	ErrSalt      = errors.New("verity: salt longer than 256 bytes")
	ErrClosed    = errors.New("verity: writer already closed")
)

// Tree is a finished hash tree.
type Tree struct {
	// Salt as given to NewWriter.
	Salt []byte
	// UUID written into the superblock.
	UUID [16]byte
	// DataBlocks is the number of 4096-byte data blocks hashed.
	DataBlocks uint64
	// RootHash is the digest of the top hash block (salted).
	RootHash [DigestSize]byte
	// Levels holds the tree's hash blocks per level, level 0 (digests of
	// the data blocks) first; each level is a whole number of blocks.
	Levels [][]byte
}

// DataSize is the number of data bytes the tree covers.
func (t *Tree) DataSize() int64 { return int64(t.DataBlocks) * BlockSize }

// HashAreaSize is the size in bytes of what WriteHashArea writes: the
// superblock block plus every level.
func (t *Tree) HashAreaSize() int64 {
	n := int64(SuperblockLen)
	for _, l := range t.Levels {
		n += int64(len(l))
	}
	return n
}

// RootHex is the root hash in lowercase hex, as veritysetup prints it.
func (t *Tree) RootHex() string { return hex.EncodeToString(t.RootHash[:]) }

// SaltHex is the salt in lowercase hex, or "-" for an empty salt (the
// kernel's spelling).
func (t *Tree) SaltHex() string {
	if len(t.Salt) == 0 {
		return "-"
	}
	return hex.EncodeToString(t.Salt)
}

// Superblock returns the 4096-byte superblock block (the 512-byte
// veritysetup superblock, zero padded).
func (t *Tree) Superblock() []byte {
	b := make([]byte, SuperblockLen)
	copy(b[0:8], sbSignature)
	binary.LittleEndian.PutUint32(b[8:], sbVersion)
	binary.LittleEndian.PutUint32(b[12:], HashType)
	copy(b[16:32], t.UUID[:])
	copy(b[32:64], Algorithm)
	binary.LittleEndian.PutUint32(b[64:], BlockSize)
	binary.LittleEndian.PutUint32(b[68:], BlockSize)
	binary.LittleEndian.PutUint64(b[72:], t.DataBlocks)
	binary.LittleEndian.PutUint16(b[80:], uint16(len(t.Salt)))
	copy(b[88:88+MaxSaltSize], t.Salt)
	return b
}

// HashArea returns the superblock block followed by the levels, top level
// first: the bytes to place at the hash offset.
func (t *Tree) HashArea() []byte {
	out := make([]byte, 0, t.HashAreaSize())
	out = append(out, t.Superblock()...)
	for i := len(t.Levels) - 1; i >= 0; i-- {
		out = append(out, t.Levels[i]...)
	}
	return out
}

// Params are what the kernel needs besides the devices: everything a
// verity table line holds. Stage 0 gets them from its configuration.
type Params struct {
	DataBlocks uint64 `json:"data_blocks"`
	// HashOffset is the byte offset of the hash area (superblock first)
	// on the hash device; a multiple of 4096.
	HashOffset int64  `json:"hash_offset"`
	RootHex    string `json:"root"`
	SaltHex    string `json:"salt"` // "-" or empty for no salt
}

// Params returns the tree's parameters for a hash area at hashOffset.
func (t *Tree) Params(hashOffset int64) Params {
	return Params{DataBlocks: t.DataBlocks, HashOffset: hashOffset, RootHex: t.RootHex(), SaltHex: t.SaltHex()}
}

// Validate checks the parameters' form (not that they match any data).
func (p Params) Validate() error {
	if p.DataBlocks == 0 {
		return errors.New("verity: data_blocks is 0")
	}
	if p.HashOffset < 0 || p.HashOffset%BlockSize != 0 {
		return fmt.Errorf("verity: hash offset %d is not a multiple of %d", p.HashOffset, BlockSize)
	}
	if b, err := hex.DecodeString(p.RootHex); err != nil || len(b) != DigestSize {
		return fmt.Errorf("verity: root hash %q is not %d hex bytes", p.RootHex, DigestSize)
	}
	if p.SaltHex != "" && p.SaltHex != "-" {
		b, err := hex.DecodeString(p.SaltHex)
		if err != nil || len(b) > MaxSaltSize {
			return fmt.Errorf("verity: salt %q is not at most %d hex bytes", p.SaltHex, MaxSaltSize)
		}
	}
	return nil
}

// DataBlocksBytes is the size of the data the tree covers, in bytes.
func (p Params) DataBlocksBytes() int64 { return int64(p.DataBlocks) * BlockSize }

// Sectors is the size of the verity device in 512-byte sectors.
func (p Params) Sectors() uint64 { return p.DataBlocks * sectorsPerBlk }

// Table returns the device-mapper table parameters of the verity target
// (everything after "0 <sectors> verity") for data at block 0 of dataDev and
// the hash area at p.HashOffset of hashDev, e.g.
// "1 /dev/nbd0 /dev/nbd0 4096 4096 2048 2049 sha256 ROOT SALT".
func (p Params) Table(dataDev, hashDev string) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	salt := p.SaltHex
	if salt == "" {
		salt = "-"
	}
	// The kernel's hash_start is where the tree's top level begins: the
	// superblock block comes first.
	hashStart := p.HashOffset/BlockSize + 1
	return fmt.Sprintf("%d %s %s %d %d %d %d %s %s %s",
		HashType, dataDev, hashDev, BlockSize, BlockSize,
		p.DataBlocks, hashStart, Algorithm, p.RootHex, salt), nil
}

// Table returns the whole table line ("0 <sectors> verity ...") for the
// tree's hash area at byte hashOffset of hashDev.
func (t *Tree) Table(dataDev, hashDev string, hashOffset int64) (string, error) {
	p := t.Params(hashOffset)
	s, err := p.Table(dataDev, hashDev)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("0 %d verity %s", p.Sectors(), s), nil
}

// Writer hashes data blocks as they are written.
type Writer struct {
	salt    []byte
	uuid    [16]byte
	h       hash.Hash
	partial []byte // bytes of an incomplete block
	blocks  uint64
	level0  []byte // digests of the data blocks
	sum     []byte
	closed  bool
}

// NewWriter returns a Writer for the given salt and superblock UUID.
func NewWriter(salt []byte, uuid [16]byte) (*Writer, error) {
	if len(salt) > MaxSaltSize {
		return nil, ErrSalt
	}
	return &Writer{
		salt:    append([]byte(nil), salt...),
		uuid:    uuid,
		h:       sha256.New(),
		partial: make([]byte, 0, BlockSize),
		sum:     make([]byte, 0, DigestSize),
	}, nil
}

func (w *Writer) hashBlock(b []byte) {
	w.h.Reset()
	w.h.Write(w.salt)
	w.h.Write(b)
	w.level0 = w.h.Sum(w.level0)
	w.blocks++
}

// Write hashes p. It never fails before Close.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, ErrClosed
	}
	n := len(p)
	if len(w.partial) > 0 {
		k := copy(w.partial[len(w.partial):BlockSize], p)
		w.partial = w.partial[:len(w.partial)+k]
		p = p[k:]
		if len(w.partial) < BlockSize {
			return n, nil
		}
		w.hashBlock(w.partial)
		w.partial = w.partial[:0]
	}
	for len(p) >= BlockSize {
		w.hashBlock(p[:BlockSize])
		p = p[BlockSize:]
	}
	w.partial = append(w.partial, p...)
	return n, nil
}

// Close finishes the tree. The data written must be a non-empty whole
// number of blocks.
func (w *Writer) Close() (*Tree, error) {
	if w.closed {
		return nil, ErrClosed
	}
	w.closed = true
	if len(w.partial) != 0 {
		return nil, fmt.Errorf("%w: %d bytes past block %d", ErrUnaligned, len(w.partial), w.blocks)
	}
	if w.blocks == 0 {
		return nil, ErrEmpty
	}
	t := &Tree{Salt: w.salt, UUID: w.uuid, DataBlocks: w.blocks}
	// Each level is the digests of the level below packed into blocks,
	// the last block zero padded; levels are added while more than one
	// digest remains, and the root hash is that last digest. A single
	// data block thus has no tree at all: its own digest is the root
	// (the kernel and veritysetup count levels the same way).
	digests := w.level0
	for len(digests) > DigestSize {
		lvl := padBlock(digests)
		t.Levels = append(t.Levels, lvl)
		var next []byte
		for off := 0; off < len(lvl); off += BlockSize {
			next = w.salted(next, lvl[off:off+BlockSize])
		}
		digests = next
	}
	copy(t.RootHash[:], digests)
	w.level0 = nil
	return t, nil
}

func (w *Writer) salted(dst, block []byte) []byte {
	w.h.Reset()
	w.h.Write(w.salt)
	w.h.Write(block)
	return w.h.Sum(dst)
}

func padBlock(b []byte) []byte {
	n := (len(b) + BlockSize - 1) / BlockSize * BlockSize
	if n == len(b) {
		return b
	}
	out := make([]byte, n)
	copy(out, b)
	return out
}

// Compute is NewWriter, one Write of data and Close.
func Compute(data, salt []byte, uuid [16]byte) (*Tree, error) {
	w, err := NewWriter(salt, uuid)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	return w.Close()
}
