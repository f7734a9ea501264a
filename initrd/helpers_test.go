package initrd

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/cavaliergopher/cpio"
)

// rec is one record read back from an archive.
type rec struct {
	hdr  *cpio.Header
	data []byte
}

// readArchive reads one newc archive from b, checking the trailer and
// returning the records and the archive's length.
func readArchive(t testing.TB, b []byte) ([]rec, int) {
	t.Helper()
	r := cpio.NewReader(bytes.NewReader(b))
	var out []rec
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading archive: %v", err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("reading %s: %v", h.Name, err)
		}
		out = append(out, rec{h, data})
	}
	i := bytes.Index(b, []byte("TRAILER!!!\x00"))
	if i < 0 {
		t.Fatal("no TRAILER!!! record")
	}
	end := int(align4(int64(i + len("TRAILER!!!\x00"))))
	if end > len(b) {
		t.Fatalf("trailer padding missing: end %d, length %d", end, len(b))
	}
	return out, end
}

func mustArchive(t testing.TB, a *Archive) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := a.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

func mustReadFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
