package nixstore

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzNAR writes a small tree made from the input (a file, an executable,
// a symlink, a directory) as a NAR and checks its framing: the magic
// first, every string padded to 8 bytes, the names and contents present,
// the same bytes twice, and NarHash's size equal to the length.
func FuzzNAR(f *testing.F) {
	f.Add("a", []byte("hello"), "target", true)
	f.Add("name with space", []byte{}, "/nix/store/x", false)
	f.Add("z", bytes.Repeat([]byte{0}, 9), "..", true)
	f.Fuzz(func(t *testing.T, name string, data []byte, target string, exec bool) {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > 200 ||
			target == "" || strings.ContainsRune(target, 0) || len(target) > 1000 {
			return
		}
		dir := t.TempDir()
		mode := os.FileMode(0o644)
		if exec {
			mode = 0o755
		}
		if err := os.MkdirAll(filepath.Join(dir, "d"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "d", name), data, mode); err != nil {
			t.Skip(err) // a name the file system refuses
		}
		if err := os.Symlink(target, filepath.Join(dir, "link")); err != nil {
			t.Fatal(err)
		}
		var a, b bytes.Buffer
		if err := WriteNAR(&a, dir); err != nil {
			t.Fatal(err)
		}
		if err := WriteNAR(&b, dir); err != nil {
			t.Fatal(err)
		}
		nar := a.Bytes()
		if !bytes.Equal(nar, b.Bytes()) {
			t.Fatal("two NARs of one tree differ")
		}
		if len(nar)%8 != 0 {
			t.Fatalf("NAR length %d is not a multiple of 8", len(nar))
		}
		if n := binary.LittleEndian.Uint64(nar); n != 13 || string(nar[8:21]) != "nix-archive-1" {
			t.Fatalf("NAR starts %q", nar[:min(len(nar), 24)])
		}
		for _, s := range []string{name, target, "symlink", "directory"} {
			if !bytes.Contains(nar, []byte(s)) {
				t.Fatalf("NAR lacks %q", s)
			}
		}
		if len(data) > 0 && !bytes.Contains(nar, data) {
			t.Fatal("NAR lacks the file's contents")
		}
		marker := []byte("executable")
		if !bytes.Contains([]byte(name+target), marker) && !bytes.Contains(data, marker) && bytes.Contains(nar, marker) != exec {
			t.Fatalf("executable marker: want %v", exec)
		}
		_, size, err := NarHash(dir)
		if err != nil || size != uint64(len(nar)) {
			t.Fatalf("NarHash size %d, %v; want %d", size, err, len(nar))
		}
	})
}
