package binarycache_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/nbimg/nbimg/binarycache"
)

// A narinfo that parses formats to text that parses to the same narinfo,
// and formatting is stable from then on.
func FuzzParseNarInfo(f *testing.F) {
	f.Add([]byte(sampleNarInfo))
	f.Add([]byte("StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhw1r-x\nURL: nar/a.nar\nNarHash: sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\nNarSize: 8\n"))
	f.Add([]byte("StorePath: x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := binarycache.ParseNarInfo(data, "/nix/store")
		if err != nil {
			return
		}
		out := n.Bytes()
		n2, err := binarycache.ParseNarInfo(out, "/nix/store")
		if err != nil {
			t.Fatalf("formatted narinfo does not parse: %v\n%s", err, out)
		}
		if !bytes.Equal(n2.Bytes(), out) {
			t.Fatalf("formatting is not stable:\n%s\n%s", out, n2.Bytes())
		}
		if n2.StorePath != n.StorePath || n2.NarHash != n.NarHash || n2.NarSize != n.NarSize || !slices.Equal(n2.References, n.References) {
			t.Fatalf("round trip changed the narinfo: %+v -> %+v", n, n2)
		}
		_ = n.Fingerprint()
	})
}

// Secret keys that parse print as they were given (without surrounding
// white space) and sign what their public half verifies.
func FuzzParseSecretKey(f *testing.F) {
	f.Add(testKey(f, "cache.example.org-1").String())
	f.Add("k:AAAA")
	f.Add(":")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := binarycache.ParseSecretKey(s)
		if err != nil {
			return
		}
		k2, err := binarycache.ParseSecretKey(k.String())
		if err != nil || k2.Name != k.Name || !k2.Key.Equal(k.Key) {
			t.Fatalf("secret key round trip: %v, %v", k2, err)
		}
		if !k.Public().Verify("m", k.Sign("m")) {
			t.Fatal("signature does not verify")
		}
	})
}

func FuzzParsePublicKey(f *testing.F) {
	f.Add(testKey(f, "cache.example.org-1").Public().String())
	f.Add("k:AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := binarycache.ParsePublicKey(s)
		if err != nil {
			return
		}
		k2, err := binarycache.ParsePublicKey(k.String())
		if err != nil || k2.Name != k.Name || !k2.Key.Equal(k.Key) {
			t.Fatalf("public key round trip: %v, %v", k2, err)
		}
		if k.Verify("m", s) {
			t.Fatal("the key text verified as a signature")
		}
	})
}

func FuzzParseCacheInfo(f *testing.F) {
	f.Add([]byte("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n"))
	f.Add([]byte("StoreDir: /nix/store\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ci, err := binarycache.ParseCacheInfo(data)
		if err != nil {
			return
		}
		back, err := binarycache.ParseCacheInfo(ci.Bytes())
		if err != nil {
			t.Fatalf("formatted nix-cache-info does not parse: %v", err)
		}
		if back.StoreDir != ci.StoreDir || back.WantMassQuery != ci.WantMassQuery || back.Priority != ci.Priority {
			t.Fatalf("round trip %+v -> %+v", ci, back)
		}
	})
}
