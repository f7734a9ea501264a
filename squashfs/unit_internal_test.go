package squashfs

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"testing"
)

// memCache is a cache in memory. Verify stands for a checksum: it passes
// when the entry is the one in genuine (or genuine is nil).
type memCache struct {
	m, genuine map[string][]byte
}

type memEntry struct {
	*bytes.Reader
	ok bool
}

func (e memEntry) Verify() error {
	if !e.ok {
		return errors.New("checksum mismatch")
	}
	return nil
}

func (memEntry) Close() error { return nil }

func (c memCache) Get(key string) (CacheEntry, error) {
	b, ok := c.m[key]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return memEntry{bytes.NewReader(b), c.genuine == nil || bytes.Equal(b, c.genuine[key])}, nil
}

type memWriter struct {
	c   memCache
	key string
	bytes.Buffer
}

func (w *memWriter) Commit() error { w.c.m[w.key] = bytes.Clone(w.Bytes()); return nil }
func (w *memWriter) Abort()        {}

func (c memCache) Put(key string) (CacheWriter, error) { return &memWriter{c: c, key: key}, nil }

// unitMemTree is a tree of two units with files around a 4 KiB block.
func unitMemTree() *Tree {
	t := NewTree()
	for _, u := range []string{"u1", "u2"} {
		d := &Node{Name: u, Type: TypeDir, Perm: 0o755, Unit: "unit " + u}
		for i, n := range []int{1, 4095, 4096, 9000} {
			data := bytes.Repeat([]byte{byte(i), byte(n), u[1]}, n)[:n]
			d.Add(&Node{Name: string(rune('a' + i)), Type: TypeFile, Perm: 0o644, Size: int64(n), Content: data})
		}
		t.Root.Add(d)
	}
	return t
}

func writeMem(t testing.TB, c Cache) ([]byte, Stats) {
	t.Helper()
	var out seekBuffer
	st, err := Write(context.Background(), &out, unitMemTree(), Options{BlockSize: 4096, Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	return out.b, st
}

// seekBuffer is an in-memory io.WriteSeeker.
type seekBuffer struct {
	b   []byte
	pos int
}

func (s *seekBuffer) Write(p []byte) (int, error) {
	if need := s.pos + len(p); need > len(s.b) {
		s.b = append(s.b, make([]byte, need-len(s.b))...)
	}
	copy(s.b[s.pos:], p)
	s.pos += len(p)
	return len(p), nil
}

func (s *seekBuffer) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case 1:
		off += int64(s.pos)
	case 2:
		off += int64(len(s.b))
	}
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	s.pos = int(off)
	return off, nil
}

// FuzzCacheEntry puts arbitrary bytes where one unit's entry belongs: the
// table is read without trouble, a hit needs the genuine entry, and the
// image is the one written without a cache either way. The other unit's
// entry, which is genuine but not this unit's, is a seed: its table names
// the other unit.
func FuzzCacheEntry(f *testing.F) {
	want, _ := writeMem(f, nil)
	genuine := memCache{m: map[string][]byte{}}
	writeMem(f, genuine)
	var key string
	for k, v := range genuine.m {
		if key == "" || k < key {
			key = k
		}
		f.Add(v)
	}
	f.Add([]byte{})
	f.Add(make([]byte, 8))
	f.Fuzz(func(t *testing.T, entry []byte) {
		c := memCache{m: map[string][]byte{key: entry}, genuine: genuine.m}
		got, st := writeMem(t, c)
		if !bytes.Equal(got, want) {
			t.Fatalf("%d hits, %d damaged: the image differs from the one without a cache", st.CacheHits, st.CacheDamaged)
		}
		if st.CacheHits == 1 && !bytes.Equal(entry, genuine.m[key]) {
			t.Fatal("a hit on an entry that is not the genuine one")
		}
	})
}

// TestForeignEntry: with no checksum to tell, the table still tells one
// unit's entry from another's.
func TestForeignEntry(t *testing.T) {
	c := memCache{m: map[string][]byte{}}
	want, _ := writeMem(t, c)
	var keys []string
	for k := range c.m {
		keys = append(keys, k)
	}
	if len(keys) != 2 {
		t.Fatalf("%d entries, want 2", len(keys))
	}
	c.m[keys[0]], c.m[keys[1]] = c.m[keys[1]], c.m[keys[0]]
	got, st := writeMem(t, c)
	if !bytes.Equal(got, want) || st.CacheHits != 0 || st.CacheDamaged != 2 {
		t.Fatalf("swapped entries: %d hits, %d damaged (want 0, 2), same image %t", st.CacheHits, st.CacheDamaged, bytes.Equal(got, want))
	}
}
