package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCreateVia: the file a writer creates by name lands at the target
// with mode 0644 whatever the umask; a failing writer, or a path outside
// the temporary directory, leaves the previous file; nothing temporary is
// left in any case.
func TestCreateVia(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "image")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	boom := errors.New("boom")
	if err := CreateVia(target, func(tmp string) (string, error) {
		if err := os.WriteFile(filepath.Join(tmp, "x"), []byte("half"), 0o600); err != nil {
			return "", err
		}
		return "", boom
	}); !errors.Is(err, boom) {
		t.Errorf("failing writer: %v", err)
	}
	outside := filepath.Join(dir, "outside")
	if err := os.WriteFile(outside, []byte("o"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CreateVia(target, func(string) (string, error) { return outside, nil }); err == nil {
		t.Error("a path outside the temporary directory was renamed")
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "old" {
		t.Fatalf("after failures: %q, %v", b, err)
	}
	if err := CreateVia(target, func(tmp string) (string, error) {
		p := filepath.Join(tmp, "nix-store.squashfs")
		return p, os.WriteFile(p, []byte("new"), 0o600)
	}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(target)
	if err != nil || string(b) != "new" {
		t.Errorf("after success: %q, %v", b, err)
	}
	st, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2 {
		t.Errorf("left in the directory: %v", ents)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CreateVia(fifo, func(tmp string) (string, error) { t.Error("writer called for a FIFO target"); return "", nil }); !errors.Is(err, ErrNotRegular) {
		t.Errorf("FIFO target: %v", err)
	}
}
