package squashfs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/nbimg/nbimg/squashfs"
)

// failingWriter accepts limit bytes, then fails every write with errFull;
// with a limit of math.MaxInt64 it is a writer that keeps nothing.
type failingWriter struct {
	pos, size, limit int64
}

var errFull = errors.New("no space left on the test device")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.pos+int64(len(p)) > w.limit {
		return 0, errFull
	}
	w.pos += int64(len(p))
	w.size = max(w.size, w.pos)
	return len(p), nil
}

func (w *failingWriter) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		w.pos = off
	case io.SeekCurrent:
		w.pos += off
	case io.SeekEnd:
		w.pos = w.size + off
	}
	return w.pos, nil
}

// TestWriteErrorIsReported checks that a failing output is reported as
// itself, not as the cancellation it causes inside the writer.
func TestWriteErrorIsReported(t *testing.T) {
	src := t.TempDir()
	// Many more blocks than the writer keeps in flight, so the reader is
	// still at work when the output fails.
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 8 {
		data := make([]byte, 256<<10)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d", i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tree, err := squashfs.DirTree(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	full := &failingWriter{limit: 1 << 40}
	if _, err := squashfs.Write(context.Background(), full, tree, squashfs.Options{BlockSize: 4096, Processors: 2}); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int64{0, full.size / 3, full.size - 1} {
		_, err := squashfs.Write(context.Background(), &failingWriter{limit: limit}, tree,
			squashfs.Options{BlockSize: 4096, Processors: 2})
		if !errors.Is(err, errFull) {
			t.Errorf("output failing after %d bytes: error %v, want %v", limit, err, errFull)
		}
	}
}
