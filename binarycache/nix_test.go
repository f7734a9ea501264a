package binarycache_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/binarycache"
	"github.com/nbimg/nbimg/binarycache/cachecheck"
	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/internal/testutil"
)

// closurePaths converts a closure for Write.
func closurePaths(c *builder.Closure) []binarycache.Path {
	out := make([]binarycache.Path, len(c.Paths))
	for i, p := range c.Paths {
		out[i] = binarycache.Path{StorePath: p.Path, HostPath: c.HostPath(p.Path), NarHash: p.NarHash, NarSize: p.NarSize, References: p.References, Deriver: p.Deriver}
	}
	return out
}

// nixSetup finds Nix and the fixture and makes a key pair with Nix.
func nixSetup(t *testing.T) (f *testutil.Fixture, sk binarycache.SecretKey, pub string, closure *builder.Closure) {
	t.Helper()
	testutil.Tool(t, "nix-store", "nix-bin")
	f = testutil.LoadFixture(t)
	secret, public, err := cachecheck.GenerateKey(context.Background(), t.TempDir(), "nbimg-test-1")
	if err != nil {
		t.Fatal(err)
	}
	sk, err = binarycache.ReadSecretKeyFile(secret)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := binarycache.ReadPublicKeyFile(public)
	if err != nil {
		t.Fatal(err)
	}
	if pk.String() != sk.Public().String() {
		t.Fatalf("Nix's public key %s is not the public half of its secret key (%s)", pk, sk.Public())
	}
	closure, err = builder.Load(context.Background(), builder.Input{Closure: f.ClosureDir})
	if err != nil {
		t.Fatal(err)
	}
	return f, sk, pk.String(), closure
}

// Real Nix substitutes the whole fixture closure from nbimg's cache over
// HTTP and from file:// with signatures required, the contents verify, and
// a store that trusts only another key refuses the cache.
func TestNixSubstitutes(t *testing.T) {
	if testing.Short() {
		t.Skip("substitutes the fixture closure with real Nix")
	}
	python := testutil.Tool(t, "python3", "python3")
	f, sk, pub, closure := nixSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	dir := filepath.Join(t.TempDir(), "cache")
	start := time.Now()
	// zstd at a fast level: xz is read by Nix in TestNixCopyCompare.
	m, err := binarycache.Write(ctx, dir, closurePaths(closure), binarycache.Options{Compression: binarycache.Zstd, Level: 3, Keys: []binarycache.SecretKey{sk}, WriteNAR: builder.WriteNAR})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cache of %d paths (%d NAR bytes, %d file bytes) in %v", len(m.Added), m.AddedNarSize, m.AddedFileSize, time.Since(start))
	srv, err := cachecheck.Serve(ctx, python, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	t.Run("http", func(t *testing.T) {
		c := &cachecheck.Client{Root: t.TempDir(), Substituter: srv.URL, TrustedKeys: []string{pub}}
		start := time.Now()
		if out, err := c.Realise(ctx, f.Toplevel); err != nil {
			t.Fatalf("%v\nserver: %s", err, srv.Other())
		} else {
			t.Logf("nix-store --realise in %v:\n%s", time.Since(start), out)
		}
		reqs := srv.Requests()
		if n := cachecheck.NarFetches(reqs); n != len(closure.Paths) || len(m.Added) != n {
			t.Fatalf("%d NAR downloads for a closure of %d paths (%d added): %v", n, len(closure.Paths), len(m.Added), reqs)
		}
		checkClient(ctx, t, c, f)
		// The verification can fail: one changed byte is found.
		victim := filepath.Join(c.Root, closure.Paths[0].Path)
		corruptOneFile(t, victim)
		if _, err := c.Verify(ctx); err == nil {
			t.Fatalf("nix-store --verify passes after a file of %s was changed", victim)
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		other := testKey(t, "nbimg-test-1") // same name, another key
		c := &cachecheck.Client{Root: t.TempDir(), Substituter: srv.URL, TrustedKeys: []string{other.Public().String()}}
		out, err := c.Realise(ctx, f.Toplevel)
		if err == nil {
			t.Fatalf("a client trusting another key substituted the closure:\n%s", out)
		}
		if !strings.Contains(out, "is not signed by any of the keys") {
			t.Fatalf("refused, but not for the signature:\n%s", out)
		}
		if n := cachecheck.NarFetches(srv.Requests()); n != 0 {
			t.Fatalf("the refusing client downloaded %d NARs", n)
		}
		if _, err := os.Lstat(filepath.Join(c.Root, f.Toplevel)); err == nil {
			t.Fatalf("%s exists in the refusing client's store", f.Toplevel)
		}
	})

	t.Run("file", func(t *testing.T) {
		c := &cachecheck.Client{Root: t.TempDir(), Substituter: "file://" + dir, TrustedKeys: []string{pub}}
		if _, err := c.Realise(ctx, f.Toplevel); err != nil {
			t.Fatal(err)
		}
		checkClient(ctx, t, c, f)
	})
}

// checkClient checks that the client holds exactly the fixture's closure
// and that its contents verify.
func checkClient(ctx context.Context, t *testing.T, c *cachecheck.Client, f *testutil.Fixture) {
	t.Helper()
	valid, err := c.Valid(ctx, f.Toplevel)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(valid)
	if want := f.StorePaths(t); !slices.Equal(valid, want) {
		t.Fatalf("client's closure %q, want %q", valid, want)
	}
	if out, err := c.Verify(ctx); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("nix-store --verify --check-contents: %s", out)
	}
}

// corruptOneFile flips one byte of the first regular file under dir.
func corruptOneFile(t testing.TB, dir string) {
	t.Helper()
	var victim string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if victim == "" && d.Type().IsRegular() {
			if st, err := d.Info(); err == nil && st.Size() > 0 {
				victim = p
			}
		}
		return nil
	})
	if err != nil || victim == "" {
		t.Fatalf("no file to corrupt in %s: %v", dir, err)
	}
	data, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	data[0] ^= 1
	st, err := os.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(victim, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(victim, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(victim, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}
