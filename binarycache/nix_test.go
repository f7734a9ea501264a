package binarycache_test

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/binarycache"
	"github.com/nbimg/nbimg/binarycache/cachecheck"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/nixstore"
)

// closurePaths converts a closure for Write.
func closurePaths(c *nixstore.Closure) []binarycache.Path {
	out := make([]binarycache.Path, len(c.Paths))
	for i, p := range c.Paths {
		out[i] = binarycache.Path{StorePath: p.Path, HostPath: c.HostPath(p.Path), NarHash: p.NarHash, NarSize: p.NarSize, References: p.References, Deriver: p.Deriver}
	}
	return out
}

// nixSetup finds Nix and the fixture and makes a key pair with Nix.
func nixSetup(t *testing.T) (f *testutil.Fixture, sk binarycache.SecretKey, pub string, closure *nixstore.Closure) {
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
	closure, err = nixstore.Load(context.Background(), nixstore.Input{Closure: f.ClosureDir})
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
	m, err := binarycache.Write(ctx, dir, closurePaths(closure), binarycache.Options{Compression: binarycache.Zstd, Level: 3, Keys: []binarycache.SecretKey{sk}, WriteNAR: nixstore.WriteNAR})
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

// nbimg's cache and `nix copy --to file://` agree: with compression=none
// every file is byte for byte the same (signatures included: ed25519 is
// deterministic); with xz only the compressed files and the fields naming
// them (URL, FileHash, FileSize) differ, and Nix substitutes from nbimg's
// xz cache.
func TestNixCopyCompare(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nix copy")
	}
	testutil.Tool(t, "nix", "nix-bin")
	f, sk, pub, closure := nixSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Uncompressed, the whole closure; with xz (nix copy's is slow), a
	// small one with a self-reference: kexec-tools and busybox, or
	// fixture-tree's on a host without kexec.
	small := ""
	for _, p := range closure.Paths {
		if strings.HasSuffix(p.Path, "-kexec-tools") || small == "" && strings.HasSuffix(p.Path, "-fixture-tree-1.0") {
			small = p.Path
		}
	}
	if small == "" {
		t.Fatal("no kexec-tools or fixture-tree-1.0 in the fixture closure")
	}
	// From the Nix database, which knows the derivers.
	full, err := nixstore.NixStoreClosure(ctx, []string{f.Toplevel})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nixstore.NixStoreClosure(ctx, []string{small})
	if err != nil {
		t.Fatal(err)
	}
	skFile := filepath.Join(t.TempDir(), "key.secret")
	if err := os.WriteFile(skFile, []byte(sk.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []binarycache.Compression{binarycache.None, binarycache.XZ} {
		t.Run(string(c), func(t *testing.T) {
			cl, root := full, f.Toplevel
			if c == binarycache.XZ {
				cl, root = sub, small
			}
			ours, theirs := filepath.Join(t.TempDir(), "nbimg"), filepath.Join(t.TempDir(), "nix")
			if _, err := binarycache.Write(ctx, ours, closurePaths(cl), binarycache.Options{Compression: c, Keys: []binarycache.SecretKey{sk}, WriteNAR: nixstore.WriteNAR}); err != nil {
				t.Fatal(err)
			}
			if err := cachecheck.NixCopy(ctx, theirs, string(c), skFile, root); err != nil {
				t.Fatal(err)
			}
			for _, p := range cl.Paths {
				hp := path.Base(p.Path)[:32] + ".narinfo"
				a, err := os.ReadFile(filepath.Join(ours, hp))
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(filepath.Join(theirs, hp))
				if err != nil {
					t.Fatal(err)
				}
				na, err := binarycache.ParseNarInfo(a, "/nix/store")
				if err != nil {
					t.Fatal(err)
				}
				nb, err := binarycache.ParseNarInfo(b, "/nix/store")
				if err != nil {
					t.Fatalf("nix copy's narinfo: %v\n%s", err, b)
				}
				if nb.Deriver == "" || len(nb.Sigs) != 1 {
					t.Fatalf("nix copy's narinfo has no deriver or not one signature:\n%s", b)
				}
				if c == binarycache.None {
					if string(a) != string(b) {
						t.Fatalf("%s differs:\nnbimg:\n%s\nnix copy:\n%s", hp, a, b)
					}
					if !filesEqual(t, filepath.Join(ours, na.URL), filepath.Join(theirs, nb.URL)) {
						t.Fatalf("%s: NAR files differ", p.Path)
					}
					continue
				}
				if !nb.SignedBy(sk.Public()) || !na.SignedBy(sk.Public()) {
					t.Fatalf("a signature does not verify:\n%s\n%s", a, b)
				}
				if na.FileHash == nb.FileHash || na.URL == nb.URL {
					t.Logf("%s: xz files are the same", p.Path)
				}
				na.URL, na.FileHash, na.FileSize = nb.URL, nb.FileHash, nb.FileSize
				if string(na.Bytes()) != string(b) {
					t.Fatalf("%s differs beyond the compressed file:\nnbimg:\n%s\nnix copy:\n%s", hp, a, b)
				}
				if !slices.Equal(decompress(t, ours, readNarInfo(t, ours, p.Path)), decompress(t, theirs, readNarInfo(t, theirs, p.Path))) {
					t.Fatalf("%s: NARs differ", p.Path)
				}
			}
			if c == binarycache.XZ {
				client := &cachecheck.Client{Root: t.TempDir(), Substituter: "file://" + ours, TrustedKeys: []string{pub}}
				if _, err := client.Realise(ctx, root); err != nil {
					t.Fatal(err)
				}
				if _, err := client.Verify(ctx); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func filesEqual(t testing.TB, a, b string) bool {
	t.Helper()
	da, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(da) == string(db)
}
