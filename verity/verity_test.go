package verity

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// reference computes the tree the slow, obvious way, following the
// kernel's description of the layout: level i has ceil(blocks/128^(i+1))
// blocks; each digest is sha256(salt || block).
func reference(data, salt []byte) (root []byte, levels [][]byte) {
	h := func(b []byte) []byte {
		s := sha256.Sum256(append(append([]byte(nil), salt...), b...))
		return s[:]
	}
	var cur [][]byte
	for off := 0; off < len(data); off += BlockSize {
		cur = append(cur, data[off:off+BlockSize])
	}
	var digests [][]byte
	for _, b := range cur {
		digests = append(digests, h(b))
	}
	for len(digests) > 1 {
		var lvl []byte
		for _, d := range digests {
			lvl = append(lvl, d...)
		}
		for len(lvl)%BlockSize != 0 {
			lvl = append(lvl, 0)
		}
		levels = append(levels, lvl)
		digests = nil
		for off := 0; off < len(lvl); off += BlockSize {
			digests = append(digests, h(lvl[off:off+BlockSize]))
		}
	}
	return digests[0], levels
}

func testData(blocks int, seed byte) []byte {
	b := make([]byte, blocks*BlockSize)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

func TestTreeMatchesReference(t *testing.T) {
	salt, err := hex.DecodeString("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{1, 2, 127, 128, 129, 128*2 + 1}
	if !testing.Short() {
		sizes = append(sizes, 128*128, 128*128+1) // three levels
	}
	for _, blocks := range sizes {
		for _, s := range [][]byte{salt, nil} {
			data := testData(blocks, byte(blocks))
			tr, err := Compute(data, s, [16]byte{})
			if err != nil {
				t.Fatal(err)
			}
			root, levels := reference(data, s)
			if !bytes.Equal(tr.RootHash[:], root) {
				t.Errorf("%d blocks, salt %x: root %x, want %x", blocks, s, tr.RootHash, root)
			}
			if len(tr.Levels) != len(levels) {
				t.Fatalf("%d blocks: %d levels, want %d", blocks, len(tr.Levels), len(levels))
			}
			for i := range levels {
				if !bytes.Equal(tr.Levels[i], levels[i]) {
					t.Errorf("%d blocks: level %d differs", blocks, i)
				}
			}
			if tr.DataBlocks != uint64(blocks) {
				t.Errorf("DataBlocks %d, want %d", tr.DataBlocks, blocks)
			}
		}
	}
}

func TestStreamingEqualsWhole(t *testing.T) {
	data := testData(300, 7)
	whole, err := Compute(data, []byte("salt"), [16]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{1, 100, 4095, 4096, 4097, 65536} {
		w, err := NewWriter([]byte("salt"), [16]byte{1})
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(data); off += chunk {
			end := min(off+chunk, len(data))
			if n, err := w.Write(data[off:end]); err != nil || n != end-off {
				t.Fatalf("write: %d, %v", n, err)
			}
		}
		tr, err := w.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(tr.HashArea(), whole.HashArea()) || tr.RootHash != whole.RootHash {
			t.Errorf("chunk %d: tree differs from a single write", chunk)
		}
	}
}

func TestOneInputChangesOutput(t *testing.T) {
	data := testData(200, 3)
	a, err := Compute(data, []byte("s"), [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	data[150*BlockSize+9] ^= 1
	b, err := Compute(data, []byte("s"), [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compute(data, []byte("t"), [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	if a.RootHash == b.RootHash || b.RootHash == c.RootHash {
		t.Error("a changed data byte or salt left the root hash unchanged")
	}
	again, err := Compute(data, []byte("s"), [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.HashArea(), b.HashArea()) {
		t.Error("same input, different hash area")
	}
}

func TestErrors(t *testing.T) {
	if _, err := Compute(make([]byte, BlockSize+1), nil, [16]byte{}); !errors.Is(err, ErrUnaligned) {
		t.Errorf("unaligned: %v", err)
	}
	if _, err := Compute(nil, nil, [16]byte{}); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty: %v", err)
	}
	if _, err := NewWriter(make([]byte, 257), [16]byte{}); !errors.Is(err, ErrSalt) {
		t.Errorf("salt: %v", err)
	}
	w, err := NewWriter(nil, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, BlockSize)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte{1}); !errors.Is(err, ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	if _, err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second close: %v", err)
	}
}

func TestSuperblockAndTable(t *testing.T) {
	uuid := [16]byte{0xde, 0xad, 0xbe, 0xef}
	tr, err := Compute(testData(130, 1), []byte{0xab, 0xcd}, uuid)
	if err != nil {
		t.Fatal(err)
	}
	sb := tr.Superblock()
	if string(sb[:8]) != "verity\x00\x00" || binary.LittleEndian.Uint32(sb[8:]) != 1 ||
		binary.LittleEndian.Uint32(sb[12:]) != 1 || !bytes.Equal(sb[16:32], uuid[:]) ||
		strings.TrimRight(string(sb[32:64]), "\x00") != "sha256" ||
		binary.LittleEndian.Uint64(sb[72:]) != 130 || binary.LittleEndian.Uint16(sb[80:]) != 2 ||
		!bytes.Equal(sb[88:90], []byte{0xab, 0xcd}) {
		t.Errorf("superblock fields wrong: % x", sb[:96])
	}
	// 130 blocks: level 0 has 2 blocks, level 1 one: 1 + 3 blocks.
	if got := tr.HashAreaSize(); got != 4*BlockSize || int64(len(tr.HashArea())) != got {
		t.Errorf("hash area %d bytes (HashArea %d), want %d", got, len(tr.HashArea()), 4*BlockSize)
	}
	line, err := tr.Table("/dev/nbd0", "/dev/nbd0", tr.DataSize())
	if err != nil {
		t.Fatal(err)
	}
	want := "0 1040 verity 1 /dev/nbd0 /dev/nbd0 4096 4096 130 131 sha256 " + tr.RootHex() + " abcd"
	if line != want {
		t.Errorf("table\n got %q\nwant %q", line, want)
	}
	if _, err := tr.Table("a", "b", 100); err == nil {
		t.Error("unaligned hash offset accepted")
	}
	nosalt, err := Compute(testData(1, 1), nil, uuid)
	if err != nil {
		t.Fatal(err)
	}
	if nosalt.SaltHex() != "-" {
		t.Errorf("empty salt spelled %q", nosalt.SaltHex())
	}
}

func FuzzWriter(f *testing.F) {
	f.Add([]byte("salt"), uint16(1), uint16(4096), byte(0))
	f.Add([]byte{}, uint16(129), uint16(1), byte(9))
	f.Add(bytes.Repeat([]byte{7}, 64), uint16(300), uint16(5000), byte(255))
	f.Fuzz(func(t *testing.T, salt []byte, blocks, chunk uint16, seed byte) {
		if len(salt) > MaxSaltSize || blocks == 0 || blocks > 600 || chunk == 0 {
			return
		}
		data := testData(int(blocks), seed)
		w, err := NewWriter(salt, [16]byte{seed})
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(data); off += int(chunk) {
			if _, err := w.Write(data[off:min(off+int(chunk), len(data))]); err != nil {
				t.Fatal(err)
			}
		}
		tr, err := w.Close()
		if err != nil {
			t.Fatal(err)
		}
		root, levels := reference(data, salt)
		if !bytes.Equal(root, tr.RootHash[:]) || len(levels) != len(tr.Levels) {
			t.Fatalf("tree differs from the reference")
		}
		if int64(len(tr.HashArea())) != tr.HashAreaSize() {
			t.Fatal("HashAreaSize disagrees with HashArea")
		}
	})
}
