package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// NoError fails the test at once when err is not nil: for test set-up
// whose failure would make later checks meaningless.
func NoError(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ReadFile returns the content of the file name, failing the test when it
// cannot be read.
func ReadFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// CopyStore copies the store paths (cp -a, keeping modes and times) into
// root/nix/store, a store root (--store-root) of the test's own. The copy
// is made writable again when the test ends so that t.TempDir can remove
// it.
func CopyStore(t testing.TB, root string, paths []string) {
	t.Helper()
	store := filepath.Join(root, "nix", "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("chmod", "-R", "u+w", root).CombinedOutput(); err != nil {
			t.Errorf("making the store copy writable again: %v\n%s", err, out)
		}
	})
	if len(paths) == 0 {
		t.Fatal("CopyStore: no store paths")
	}
	args := append(append([]string{"-a"}, paths...), store)
	if out, err := exec.Command("cp", args...).CombinedOutput(); err != nil {
		t.Fatalf("copying store paths to %s: %v\n%s", store, err, out)
	}
}
