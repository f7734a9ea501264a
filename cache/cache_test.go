package cache_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nbimg/nbimg/cache"
)

func key(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func put(t *testing.T, d *cache.Dir, k string, payload []byte) {
	t.Helper()
	w, err := d.Put(k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, d *cache.Dir, k string) ([]byte, error) {
	t.Helper()
	e, err := d.Get(k)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	if err := e.Verify(); err != nil {
		return nil, err
	}
	b := make([]byte, e.Size())
	if _, err := e.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b, nil
}

func entryPath(dir, k string) string { return filepath.Join(dir, "v1", k[:2], k) }

func TestPutGet(t *testing.T) {
	dir := t.TempDir()
	d, err := cache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d.ReadOnly() {
		t.Fatal("a fresh directory is read-only")
	}
	if _, err := d.Get(key("a")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing entry: %v, want fs.ErrNotExist", err)
	}
	payload := bytes.Repeat([]byte("payload "), 100000)
	put(t, d, key("a"), payload)
	got, err := get(t, d, key("a"))
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("get: %v (%d bytes, want %d)", err, len(got), len(payload))
	}
	// Reading past the end is io.EOF with what there is.
	e, err := d.Get(key("a"))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 10)
	if n, err := e.ReadAt(b, e.Size()-4); n != 4 || err != io.EOF {
		t.Errorf("read at the end: %d, %v; want 4, EOF", n, err)
	}
	e.Close()
	// An aborted entry leaves nothing.
	w, err := d.Put(key("b"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("half"))
	w.Abort()
	if _, err := d.Get(key("b")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("aborted entry: %v, want fs.ErrNotExist", err)
	}
	st, err := d.Stats(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 1 || st.TempFiles != 0 || st.Bytes <= int64(len(payload)) {
		t.Errorf("stats %+v: want 1 entry, no temporary file", st)
	}
	if _, err := d.Put("../../x"); err == nil {
		t.Error("a key that is a path was accepted")
	}
	// A file is not a cache directory.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Open(file); err == nil {
		t.Error("a file was opened as a cache directory")
	}
}

func TestDamagedEntries(t *testing.T) {
	dir := t.TempDir()
	d, err := cache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("some compressed blocks")
	for i, damage := range []func(p string) error{
		func(p string) error { return os.Truncate(p, 50) },
		func(p string) error { return os.Truncate(p, 0) },
		func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[len(b)-40] ^= 1
			return os.WriteFile(p, b, 0o644)
		},
		func(p string) error { // another key's entry
			other := key("other")
			put(t, d, other, payload)
			b, err := os.ReadFile(entryPath(dir, other))
			if err != nil {
				return err
			}
			return os.WriteFile(p, b, 0o644)
		},
		func(p string) error { // a future format
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[12] = '9'
			return os.WriteFile(p, b, 0o644)
		},
	} {
		k := key(fmt.Sprint(i))
		put(t, d, k, payload)
		if err := damage(entryPath(dir, k)); err != nil {
			t.Fatal(err)
		}
		if _, err := get(t, d, k); !errors.Is(err, cache.ErrDamaged) {
			t.Errorf("damage %d: %v, want ErrDamaged", i, err)
		}
		if i == 2 { // only the checksum tells
			if e, err := d.Get(k); err != nil {
				t.Errorf("damage %d: Get checks more than the header: %v", i, err)
			} else {
				e.Close()
			}
		}
		put(t, d, k, payload) // rewritten
		if got, err := get(t, d, k); err != nil || !bytes.Equal(got, payload) {
			t.Errorf("damage %d, rewritten: %v", i, err)
		}
	}
}

func TestConcurrentPut(t *testing.T) {
	dir := t.TempDir()
	payload := bytes.Repeat([]byte{1, 2, 3}, 1<<18)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := cache.Open(dir)
			if err != nil {
				errs <- err
				return
			}
			for i := range 5 {
				w, err := d.Put(key(fmt.Sprint(i)))
				if err != nil {
					errs <- err
					return
				}
				for off := 0; off < len(payload); off += 4096 {
					w.Write(payload[off : off+4096])
				}
				if err := w.Commit(); err != nil {
					errs <- err
					return
				}
				if e, err := d.Get(key(fmt.Sprint(i))); err != nil {
					errs <- err
					return
				} else {
					e.Close()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	d, err := cache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := d.Stats(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 5 || st.TempFiles != 0 {
		t.Fatalf("stats %+v: want 5 entries, no temporary files", st)
	}
}

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	d, err := cache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	payload := make([]byte, 1000)
	for i := range 6 {
		k := key(fmt.Sprint(i))
		put(t, d, k, payload)
		used := now.Add(-time.Duration(6-i) * 24 * time.Hour) // entry 0 is the least recently used
		if err := os.Chtimes(entryPath(dir, k), used, used); err != nil {
			t.Fatal(err)
		}
	}
	// A temporary file left by a killed build, and a fresh one.
	for _, age := range []time.Duration{2 * time.Hour, time.Minute} {
		p := filepath.Join(dir, "v1", "00", ".tmp-"+fmt.Sprint(age))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, payload, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := d.Stats(now)
	if err != nil {
		t.Fatal(err)
	}
	size := st.Bytes / 6
	if st.Entries != 6 || st.TempFiles != 2 || st.StaleTemps != 1 || !st.Oldest.Equal(now.Add(-6*24*time.Hour)) {
		t.Fatalf("stats %+v", st)
	}
	// Older than 4.5 days: entries 0 and 1.
	r, err := d.Prune(-1, 108*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if r.Removed != 2 || r.Entries != 4 {
		t.Fatalf("prune --older-than: %+v, want 2 removed, 4 left", r)
	}
	for i, want := range []bool{false, false, true, true, true, true} {
		if _, err := d.Get(key(fmt.Sprint(i))); (err == nil) != want {
			t.Errorf("entry %d: present %t, want %t", i, err == nil, want)
		}
	}
	// Last uses 2 (newest), 3, 4, then 5: keep two entries' worth.
	for i := 2; i <= 5; i++ {
		used := now.Add(-time.Duration(i) * time.Minute)
		if i == 5 {
			used = now.Add(-time.Hour)
		}
		if err := os.Chtimes(entryPath(dir, key(fmt.Sprint(i))), used, used); err != nil {
			t.Fatal(err)
		}
	}
	r, err = d.Prune(2*size, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if r.Removed != 2 || r.Entries != 2 || r.Bytes != 2*size {
		t.Fatalf("prune --max-size: %+v, want 2 removed, 2 left", r)
	}
	for i, want := range []bool{false, false, true, true, false, false} {
		if _, err := d.Get(key(fmt.Sprint(i))); (err == nil) != want {
			t.Errorf("after --max-size: entry %d present %t, want %t", i, err == nil, want)
		}
	}
	st, err = d.Stats(now)
	if err != nil {
		t.Fatal(err)
	}
	if st.TempFiles != 1 {
		t.Errorf("%d temporary files left, want the fresh one", st.TempFiles)
	}
}

// TestReadOnly opens a cache on a read-only bind mount (as root) or a
// directory without write permission (otherwise): entries are read, Put
// fails with ErrReadOnly, and the directory is not changed.
func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	d, err := cache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	put(t, d, key("a"), []byte("stored"))
	ro := dir
	if os.Getuid() == 0 {
		ro = t.TempDir()
		if err := syscall.Mount(dir, ro, "", syscall.MS_BIND, ""); err != nil {
			t.Skipf("bind mount: %v", err)
		}
		t.Cleanup(func() {
			if err := syscall.Unmount(ro, 0); err != nil {
				t.Errorf("unmount %s: %v", ro, err)
			}
		})
		if err := syscall.Mount("", ro, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
			t.Fatalf("remount read-only: %v", err)
		}
	} else {
		for _, p := range []string{filepath.Join(dir, "v1", key("a")[:2]), filepath.Join(dir, "v1")} {
			if err := os.Chmod(p, 0o555); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(p, 0o755) })
		}
	}
	rd, err := cache.Open(ro)
	if err != nil {
		t.Fatal(err)
	}
	if !rd.ReadOnly() {
		t.Fatal("a read-only directory was opened read-write")
	}
	if got, err := get(t, rd, key("a")); err != nil || string(got) != "stored" {
		t.Fatalf("get from a read-only cache: %q, %v", got, err)
	}
	if _, err := rd.Put(key("b")); !errors.Is(err, cache.ErrReadOnly) {
		t.Fatalf("put into a read-only cache: %v, want ErrReadOnly", err)
	}
	if _, err := rd.Prune(0, 0, time.Now()); !errors.Is(err, cache.ErrReadOnly) {
		t.Fatalf("prune of a read-only cache: %v, want ErrReadOnly", err)
	}
	st, err := rd.Stats(time.Now())
	if err != nil || st.Entries != 1 || !st.ReadOnly {
		t.Fatalf("stats of a read-only cache: %+v, %v", st, err)
	}
}
