package builder

import (
	"net/url"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/stage0"
)

func TestPXEStoreURL(t *testing.T) {
	const d = "5n0mcklyaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-fixture-1.0"
	for _, tc := range []struct{ base, want string }{
		{"http://10.0.2.2:8000", "http://10.0.2.2:8000/" + d + "/nix-store.squashfs"},
		{"http://boot.example.org/pxe/tftp/", "http://boot.example.org/pxe/tftp/" + d + "/nix-store.squashfs"},
		{"https://h/a", "https://h/a/" + d + "/nix-store.squashfs"},
		{"nbd://server", "nbd://server/" + d},
		{"nbd://server:10810/", "nbd://server:10810/" + d},
		{"nbd://server/stores", "nbd://server/stores/" + d},
	} {
		got, err := PXEStoreURL(tc.base, d)
		if err != nil || got != tc.want {
			t.Errorf("PXEStoreURL(%q) = %q, %v; want %q", tc.base, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ base, dir, want string }{
		{"ftp://h/x", d, "ftp"},
		{"http:///x", d, "no host"},
		{"http://h/x?a=b", d, "query"},
		{"http://h/x#f", d, "query"},
		{"http://h/x", "", "directory"},
		{"http://h/x", "a/b", "directory"},
		{"http://h/x", "..", "directory"},
	} {
		if got, err := PXEStoreURL(tc.base, tc.dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("PXEStoreURL(%q, %q) = %q, %v; want an error about %s", tc.base, tc.dir, got, err, tc.want)
		}
	}
}

// FuzzPXEStoreURL: every URL PXEStoreURL makes is a store URL stage 0
// accepts, under the base, naming the system's directory, and for HTTP
// its image file.
func FuzzPXEStoreURL(f *testing.F) {
	for _, s := range [][2]string{{"http://10.0.2.2:8000", "abc-nixos-system-x"}, {"nbd://h/p/", "d"}, {"https://h", "x.y"}, {"nbd://[::1]:1/", "d"}, {"http://h/%zz", "d"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, base, dir string) {
		got, err := PXEStoreURL(base, dir)
		if err != nil {
			return
		}
		u, err := stage0.ParseURL(got)
		if err != nil {
			t.Fatalf("PXEStoreURL(%q, %q) = %q, which stage 0 refuses: %v", base, dir, got, err)
		}
		if !strings.HasPrefix(got, strings.TrimRight(base, "/")+"/") {
			t.Fatalf("PXEStoreURL(%q, %q) = %q, not under the base", base, dir, got)
		}
		p, err := url.Parse(got)
		if err != nil {
			t.Fatal(err)
		}
		want := "/" + dir
		if u.Scheme != "nbd" {
			want += "/" + StoreImageName
		}
		if !strings.HasSuffix(p.Path, want) {
			t.Fatalf("PXEStoreURL(%q, %q) = %q, whose path %q does not end in %q", base, dir, got, p.Path, want)
		}
	})
}

// TestPXEStoreURLEscapes: a store path name may hold characters a URL
// path cannot, e.g. "?" (Nix allows it): they are escaped, and the server
// decodes them back to the directory's name.
func TestPXEStoreURLEscapes(t *testing.T) {
	got, err := PXEStoreURL("http://h:1/b", "abc-what?=x")
	if want := "http://h:1/b/abc-what%3F=x/nix-store.squashfs"; err != nil || got != want {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
}
