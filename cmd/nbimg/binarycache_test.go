package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/binarycache"
	"github.com/nbimg/nbimg/binarycache/cachecheck"
	"github.com/nbimg/nbimg/internal/testutil"
)

// dirDigest maps each file below dir to its sha256.
func dirDigest(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		out[rel] = sha256.Sum256(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// `nbimg binary-cache` on the fixture: the same bytes with 1 and 2
// workers, a second run keeps everything, and real Nix substitutes the
// closure from the cache with the key the command was given.
func TestBinaryCacheCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("compresses the fixture closure twice and substitutes it with Nix")
	}
	f := testutil.LoadFixture(t)
	testutil.Tool(t, "nix-store", "nix-bin")
	keyDir := t.TempDir()
	k, err := binarycache.GenerateKey("nbimg-cli-test-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(keyDir, "secret.key")
	if err := os.WriteFile(secret, []byte(k.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	for i, dir := range []string{a, b} {
		code, stdout, stderr := runApp(t, "binary-cache", "-o", dir, "--toplevel", f.Toplevel, "--closure", f.ClosureDir,
			"--sign-key", secret, "--compression", "zstd", "--zstd-level", "3", "--processors", []string{"1", "2"}[i])
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		n := len(f.StorePaths(t))
		if stdout != "" || !strings.Contains(stderr, " paths added") || !strings.Contains(stderr, k.Public().String()) {
			t.Fatalf("stdout %q, stderr %q", stdout, stderr)
		}
		var m binarycache.Manifest
		data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		if len(m.Added) != n || m.ZstdLevel != 3 {
			t.Fatalf("manifest: %d added of %d, level %d", len(m.Added), n, m.ZstdLevel)
		}
	}
	da, db := dirDigest(t, a), dirDigest(t, b)
	if len(da) != len(db) {
		t.Fatalf("1 and 2 processors wrote %d and %d files", len(da), len(db))
	}
	for name, sum := range da {
		if db[name] != sum {
			t.Fatalf("%s differs between 1 and 2 processors", name)
		}
	}
	code, _, stderr := runApp(t, "binary-cache", "-o", a, "--closure", f.ClosureDir, "--sign-key", secret)
	if code != exitOK || !strings.Contains(stderr, ": 0 paths added") {
		t.Fatalf("second run: exit %d: %s", code, stderr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := &cachecheck.Client{Root: t.TempDir(), Substituter: "file://" + a, TrustedKeys: []string{k.Public().String()}}
	if out, err := c.Realise(ctx, f.Toplevel); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(out, f.Toplevel) {
		t.Fatalf("nix-store --realise did not print the toplevel:\n%s", out)
	}
	if _, err := c.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestBinaryCacheCommandErrors(t *testing.T) {
	tmp := t.TempDir()
	badKey := filepath.Join(tmp, "bad.key")
	if err := os.WriteFile(badKey, []byte("nocolon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "cache")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no input", []string{"-o", out}, exitUsage, "needs --toplevel or --closure"},
		{"argument", []string{"-o", out, "--closure", tmp, "x"}, exitUsage, "takes no arguments"},
		{"compression", []string{"-o", out, "--closure", tmp, "--compression", "bzip2"}, exitUsage, "unknown compression"},
		{"level without zstd", []string{"-o", out, "--closure", tmp, "--zstd-level", "3"}, exitUsage, "--zstd-level is for"},
		{"level range", []string{"-o", out, "--closure", tmp, "--compression", "zstd", "--zstd-level", "23"}, exitUsage, "want 1 to 22"},
		{"priority", []string{"-o", out, "--closure", tmp, "--priority", "0"}, exitUsage, "--priority 0"},
		{"closures", []string{"-o", out, "--toplevel", "a", "--toplevel", "b", "--toplevel", "c", "--closure", "x", "--closure", "y"}, exitUsage, "3 --toplevel"},
		{"bad key", []string{"-o", out, "--closure", tmp, "--sign-key", badKey}, exitFailure, "malformed key"},
		{"missing key", []string{"-o", out, "--closure", tmp, "--sign-key", filepath.Join(tmp, "none")}, exitFailure, "no such file"},
		{"not a closure", []string{"-o", out, "--closure", tmp}, exitFailure, "registration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runApp(t, append([]string{"binary-cache"}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, want %d; stderr %q, want %q in it", code, tc.code, stderr, tc.want)
			}
		})
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a failed run created the cache directory")
	}
}
