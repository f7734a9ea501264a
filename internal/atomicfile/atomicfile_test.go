package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRefusesSpecialTargets(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, link} {
		if err := WriteFile(p, []byte("x")); !errors.Is(err, ErrNotRegular) {
			t.Errorf("WriteFile %s: %v", p, err)
		}
		if err := ReplaceDir(p, func(string) error { return nil }); !errors.Is(err, ErrNotRegular) {
			t.Errorf("ReplaceDir %s: %v", p, err)
		}
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep" {
		t.Errorf("victim: %q, %v", b, err)
	}
}

// TestRemoveTemporariesRestoresPrevious: a stop between the two renames of
// ReplaceDir puts the previous output back.
func TestRemoveTemporariesRestoresPrevious(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "old"), []byte("previous"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Play the swap's first half as ReplaceDir does, then stop.
	old := filepath.Join(filepath.Dir(dir), ".out.tmp-1.old")
	if err := os.Rename(dir, old); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	pending[old] = func() {
		if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
			_ = os.Rename(old, dir)
		}
	}
	mu.Unlock()
	tmp, err := os.MkdirTemp(filepath.Dir(dir), TempPrefix(dir))
	if err != nil {
		t.Fatal(err)
	}
	register(tmp)
	RemoveTemporaries()
	if b, err := os.ReadFile(filepath.Join(dir, "old")); err != nil || string(b) != "previous" {
		t.Errorf("previous output: %q, %v", b, err)
	}
	if _, err := os.Lstat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary %s left: %v", tmp, err)
	}
}

func TestReplaceDirOverReadOnlyTree(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	sub := filepath.Join(dir, "sub")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "f"), []byte("x"), 0o444); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{sub, dir} {
		if err := os.Chmod(p, 0o555); err != nil {
			t.Fatal(err)
		}
	}
	err := ReplaceDir(dir, func(tmp string) error {
		return os.WriteFile(filepath.Join(tmp, "new"), []byte("y"), 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "new"))
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("new file: %v, %v", st, err)
	}
	ents, err := os.ReadDir(filepath.Dir(dir))
	if err != nil || len(ents) != 1 {
		t.Errorf("left beside the output: %v, %v", ents, err)
	}
}

func TestErrorsNameTheTarget(t *testing.T) {
	name := filepath.Join(t.TempDir(), strings.Repeat("n", 255))
	err := Create(name, func(f *os.File) error {
		_, err := f.Seek(-1, 0)
		return err
	})
	if err == nil || strings.Contains(err.Error(), ".tmp-") || !strings.Contains(err.Error(), name) {
		t.Errorf("error %v", err)
	}
}
