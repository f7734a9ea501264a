package binarycache_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/binarycache"
)

const sampleNarInfo = `StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhw1r-curl-7.82.0-bin
URL: nar/05ra3y72i3qjri7xskf9qj8kb29r6naqy1sqpbs3azi3xcigmj56.nar.xz
Compression: xz
FileHash: sha256:05ra3y72i3qjri7xskf9qj8kb29r6naqy1sqpbs3azi3xcigmj56
FileSize: 68852
NarHash: sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s
NarSize: 196040
References: 0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0 syd87l2rxw8cbsxmxl853h0r6pdwhw1r-curl-7.82.0-bin
Deriver: 5rwxzi7pal3qhpsyfc16gzkh939q1np6-curl-7.82.0.drv
Sig: cache.nixos.org-1:TsTTb3WGTZKphvYdBHXwo6weVILmTytUjLB+vcX89fOjjRicCHmKA4RCPMVLkj6TMJ4GMX3HPVWRdD1hkeKZBQ==
`

func TestNarInfoRoundTrip(t *testing.T) {
	n, err := binarycache.ParseNarInfo([]byte(sampleNarInfo), "/nix/store")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(n.Bytes()); got != sampleNarInfo {
		t.Fatalf("round trip:\n%s\nwant\n%s", got, sampleNarInfo)
	}
	if n.FileSize != 68852 || n.NarSize != 196040 || len(n.References) != 2 || n.Deriver != "5rwxzi7pal3qhpsyfc16gzkh939q1np6-curl-7.82.0.drv" {
		t.Fatalf("parsed %+v", n)
	}
	if n.HashPart() != "syd87l2rxw8cbsxmxl853h0r6pdwhw1r" {
		t.Fatalf("hash part %s", n.HashPart())
	}
	want := "1;/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhw1r-curl-7.82.0-bin;sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s;196040;" +
		"/nix/store/0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0,/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhw1r-curl-7.82.0-bin"
	if n.Fingerprint() != want {
		t.Fatalf("fingerprint %s", n.Fingerprint())
	}
}

func TestNarInfoSign(t *testing.T) {
	n, err := binarycache.ParseNarInfo([]byte(sampleNarInfo), "/nix/store")
	if err != nil {
		t.Fatal(err)
	}
	k, other := testKey(t, "k-1"), testKey(t, "k-2")
	if n.SignedBy(k.Public()) {
		t.Fatal("signed before signing")
	}
	n.Sign(k)
	n.Sign(k) // replaces, does not add
	if len(n.Sigs) != 2 || !n.SignedBy(k.Public()) || n.SignedBy(other.Public()) {
		t.Fatalf("sigs %q", n.Sigs)
	}
	n.NarSize++
	if n.SignedBy(k.Public()) {
		t.Fatal("signature still verifies after the NAR size changed")
	}
}

func TestParseNarInfoDefaultsAndHashes(t *testing.T) {
	in := "StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhw1r-x\nURL: nar/a.nar.bz2\n" +
		"NarHash: sha256:" + strings.Repeat("ab", 32) + "\nNarSize: 8\nReferences: \nDeriver: unknown-deriver\nFutureKey: whatever\n"
	n, err := binarycache.ParseNarInfo([]byte(in), "/nix/store")
	if err != nil {
		t.Fatal(err)
	}
	if n.Compression != "bzip2" {
		t.Fatalf("compression %q, want Nix's default bzip2", n.Compression)
	}
	if !strings.HasPrefix(n.NarHash, "sha256:") || len(n.NarHash) != 7+52 {
		t.Fatalf("base16 hash not converted to nix32: %s", n.NarHash)
	}
	if n.Deriver != "" || len(n.References) != 0 {
		t.Fatalf("parsed %+v", n)
	}
}

func TestParseNarInfoErrors(t *testing.T) {
	const sp = "StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhw1r-x\n"
	const rest = "URL: nar/a.nar\nNarHash: sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\nNarSize: 8\n"
	for _, tc := range []struct{ name, in string }{
		{"no newline", strings.TrimSuffix(sp+rest, "\n")},
		{"no colon", sp + rest + "garbage\n"},
		{"no store path", rest},
		{"other store", strings.Replace(sp, "/nix/store", "/gnu/store", 1) + rest},
		{"bad store name", "StorePath: /nix/store/short-x\n" + rest},
		{"no url", sp + strings.Replace(rest, "URL: nar/a.nar\n", "", 1)},
		{"zero nar size", sp + strings.Replace(rest, "NarSize: 8", "NarSize: 0", 1)},
		{"bad size", sp + rest + "FileSize: -1\n"},
		{"md5 hash", sp + strings.Replace(rest, "sha256:1b8m", "md5:1b8m", 1)},
		{"short hash", sp + strings.Replace(rest, "1b8m03r6", "", 1)},
		{"bad reference", sp + rest + "References: nothash-x\n"},
		{"references twice", sp + rest + "References: \nReferences: \n"},
		{"bad deriver", sp + rest + "Deriver: x.drv\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := binarycache.ParseNarInfo([]byte(tc.in), "/nix/store"); !errors.Is(err, binarycache.ErrNarInfo) {
				t.Fatalf("ParseNarInfo = %v, want ErrNarInfo", err)
			}
		})
	}
}

func TestCacheInfo(t *testing.T) {
	ci := binarycache.CacheInfo{StoreDir: "/nix/store", WantMassQuery: true, Priority: 30}
	if got := string(ci.Bytes()); got != "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n" {
		t.Fatalf("nix-cache-info %q", got)
	}
	back, err := binarycache.ParseCacheInfo(ci.Bytes())
	if err != nil || back != ci {
		t.Fatalf("round trip %+v, %v", back, err)
	}
	if _, err := binarycache.ParseCacheInfo([]byte("WantMassQuery: 1\n")); err == nil {
		t.Fatal("a nix-cache-info without StoreDir parsed")
	}
	if _, err := binarycache.ParseCacheInfo([]byte("StoreDir: /nix/store\nPriority: high\n")); err == nil {
		t.Fatal("a non-numeric priority parsed")
	}
}
