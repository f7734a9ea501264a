package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// genChunk is the unit of bigBody's generator.
const genChunk = 1 << 20

// bigBody is a deterministic, incompressible body of any size that can be
// read from any offset, so a server can answer Range requests without the
// bytes existing anywhere: chunk i is one random megabyte rotated by an
// amount that depends on i, stamped with i in its first 8 bytes (cheap to
// make, and a byte from the wrong offset differs).
type bigBody struct {
	size, off int64
	chunk     int64 // index of buf's chunk, -1: none
	buf       []byte
}

// bigBase is the random megabyte every chunk is made from.
var bigBase = func() []byte {
	b := make([]byte, genChunk)
	rng := rand.NewChaCha8([32]byte{'n', 'b', 'i', 'm', 'g'})
	if _, err := rng.Read(b); err != nil {
		panic(err) // ChaCha8.Read never fails
	}
	return b
}()

func newBigBody(size int64) *bigBody {
	return &bigBody{size: size, chunk: -1, buf: make([]byte, genChunk)}
}

func (b *bigBody) fill(i int64) {
	if b.chunk == i {
		return
	}
	r := int(i*4099) % genChunk
	n := copy(b.buf, bigBase[r:])
	copy(b.buf[n:], bigBase[:r])
	binary.LittleEndian.PutUint64(b.buf, uint64(i))
	b.chunk = i
}

func (b *bigBody) Read(p []byte) (int, error) {
	if b.off >= b.size {
		return 0, io.EOF
	}
	i := b.off / genChunk
	b.fill(i)
	n := copy(p, b.buf[b.off-i*genChunk:min(int64(genChunk), b.size-i*genChunk)])
	b.off += int64(n)
	return n, nil
}

func (b *bigBody) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += b.off
	case io.SeekEnd:
		off += b.size
	}
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	b.off = off
	return off, nil
}

// abortAfter passes writes through until limit bytes, then aborts the
// response (the server closes the connection mid-body).
type abortAfter struct {
	http.ResponseWriter
	limit int64
}

func (a *abortAfter) Write(p []byte) (int, error) {
	if int64(len(p)) >= a.limit {
		a.ResponseWriter.Write(p[:a.limit]) //nolint:errcheck // the connection is dropped right after
		panic(http.ErrAbortHandler)
	}
	a.limit -= int64(len(p))
	return a.ResponseWriter.Write(p)
}

// TestFetchPast4GiB downloads a body of more than 4 GiB from a loopback
// server that drops the connection once, past 2^32 bytes: the client
// resumes with a Range request starting past 2^32, the pinned sha256 of
// the whole body matches, and the file holds the right bytes past 2^32.
// This is stage 0's HTTP path for images of 4 GiB and more, run on the
// host; a QEMU guest downloading 4 GiB over user networking would take far
// longer than CI allows, and its RAM would have to hold the image.
//
// Cost: ~4 GiB of temporary disk, ~30-60 s.
func TestFetchPast4GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("4 GiB download")
	}
	const size = 4<<30 + genChunk + 5 // not a multiple of anything
	start := time.Now()
	h := sha256.New()
	if _, err := io.Copy(h, newBigBody(size)); err != nil {
		t.Fatal(err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	t.Logf("expected sha256 in %.1fs", time.Since(start).Seconds())

	const dropAt = 1<<32 + genChunk/2 + 7 // inside the body
	var mu sync.Mutex
	var ranges []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		first := len(ranges) == 0
		ranges = append(ranges, r.Header.Get("Range"))
		mu.Unlock()
		if first {
			w = &abortAfter{ResponseWriter: w, limit: dropAt}
		}
		http.ServeContent(w, r, "nix-store.squashfs", time.Unix(1, 0), newBigBody(size))
	}))
	defer srv.Close()

	dest := filepath.Join(t.TempDir(), "nix-store.squashfs")
	var lines []string
	o := Options{URL: srv.URL + "/nix-store.squashfs", Size: size, SHA256: sum, Dest: dest,
		Log: func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }}
	fast(&o)
	start = time.Now()
	if err := Fetch(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	t.Logf("fetched %d bytes in %.1fs", int64(size), time.Since(start).Seconds())

	if len(ranges) != 2 || ranges[0] != "" || !strings.HasPrefix(ranges[1], "bytes=") {
		t.Fatalf("requests' Range headers: %q; want none, then a resume", ranges)
	}
	from, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(ranges[1], "bytes="), "-"), 10, 64)
	if err != nil || from <= 1<<32 || from > dropAt {
		t.Errorf("resumed with %q; want a start past 2^32, at most %d", ranges[1], int64(dropAt))
	}
	st, err := os.Stat(dest)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != size {
		t.Fatalf("file is %d bytes, want %d", st.Size(), int64(size))
	}
	// Bytes around the resume point and at the end, against the generator.
	f, err := os.Open(dest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, off := range []int64{1<<32 - 100, from - 10, size - 3000} {
		got := make([]byte, 3000)
		if _, err := f.ReadAt(got, off); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, 3000)
		g := newBigBody(size)
		if _, err := g.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(g, want); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("bytes at %d differ from what the server sent", off)
		}
	}
	text := strings.Join(lines, "\n")
	for _, want := range []string{"of 4097 MiB)", "4097 MiB, done", "waiting for " + o.URL} {
		if !strings.Contains(text, want) {
			t.Errorf("console lines lack %q:\n%s", want, text)
		}
	}
}
