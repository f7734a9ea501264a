package builder

import (
	"strings"
	"testing"
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
		{"http://h/x", "a b", "directory"},
	} {
		if got, err := PXEStoreURL(tc.base, tc.dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("PXEStoreURL(%q, %q) = %q, %v; want an error about %s", tc.base, tc.dir, got, err, tc.want)
		}
	}
}
