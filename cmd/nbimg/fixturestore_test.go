package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// copyFixtureStore copies the fixture's closure into root/nix/store, a
// store root (--store-root) the tests can add paths to. The copy keeps
// modes and times; it is made writable again when the test ends so that
// t.TempDir can remove it.
func copyFixtureStore(t *testing.T, f *testutil.Fixture) string {
	t.Helper()
	root := t.TempDir()
	testutil.CopyStore(t, root, f.StorePaths(t))
	return root
}

// secondGenerationHash is the hash part of the toplevel secondGeneration
// makes.
const secondGenerationHash = "22222222222222222222222222222222"

// secondGeneration adds to the store root a second NixOS system: the
// fixture's toplevel under another store path and version (2.0), with the
// same kernel, initrd, init and software. Stage 2 takes its store path from
// init=, so a boot of this system names it in its "toplevel" line. It
// returns the new toplevel's store path.
func secondGeneration(t *testing.T, f *testutil.Fixture, root string) string {
	t.Helper()
	top := "/nix/store/" + secondGenerationHash + "-nixos-system-fixture-2.0"
	dst := filepath.Join(root, top)
	if out, err := exec.Command("cp", "-a", f.Toplevel, dst).CombinedOutput(); err != nil {
		t.Fatalf("copying the toplevel: %v\n%s", err, out)
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dst, "nixos-version")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "nixos-version"), []byte("2.0"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, 0o555); err != nil {
		t.Fatal(err)
	}
	return top
}

// requireTopLine fails unless the console shows stage 2 running the
// system top (its "toplevel PATH" line).
func requireTopLine(t *testing.T, console []byte, top string) {
	t.Helper()
	if !strings.Contains(string(console), "toplevel "+top+"\n") && !strings.Contains(string(console), "toplevel "+top+"\r\n") {
		t.Fatalf("the console does not show stage 2 of %s", top)
	}
}

// skipShort skips QEMU boots under -short: each takes 30-80 s under TCG.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots QEMU (tens of seconds under TCG)")
	}
}
