package builder

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/nixstore"
)

// TestResolveCA: an https:// store URL takes --store-ca's bundle, else
// the system's own, found through the toplevel's etc symlinks as NixOS
// lays them out (toplevel/etc -> an etc path, whose
// ssl/certs/ca-certificates.crt -> the cacert package), resolved inside
// the store root; without either it is refused naming --store-ca.
func TestResolveCA(t *testing.T) {
	root := t.TempDir()
	store := filepath.Join(root, "nix", "store")
	ca := qemu.NewTestCA(t).CertPEM
	for _, d := range []string{"aaaa-system", "bbbb-etc/etc/ssl/certs", "cccc-cacert/etc/ssl/certs"} {
		if err := os.MkdirAll(filepath.Join(store, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(store, "cccc-cacert/etc/ssl/certs/ca-bundle.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"aaaa-system/etc": "/nix/store/bbbb-etc/etc",
		"bbbb-etc/etc/ssl/certs/ca-certificates.crt": "/nix/store/cccc-cacert/etc/ssl/certs/ca-bundle.crt",
	} {
		if err := os.Symlink(target, filepath.Join(store, link)); err != nil {
			t.Fatal(err)
		}
	}
	c := &nixstore.Closure{StoreDir: "/nix/store", StoreRoot: root, Toplevel: &nixstore.Toplevel{Path: "/nix/store/aaaa-system"}}

	n := &NetStore{URL: "https://10.0.2.2/nix-store.squashfs"}
	if err := n.ResolveCA(c); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(n.CA, ca) || n.CASource != "/nix/store/cccc-cacert/etc/ssl/certs/ca-bundle.crt" {
		t.Errorf("system CA from %q (%d bytes)", n.CASource, len(n.CA))
	}

	given := qemu.NewTestCA(t).CertPEM
	n = &NetStore{URL: "https://10.0.2.2/x", CA: given, CASource: "ca.pem"}
	if err := n.ResolveCA(c); err != nil || !bytes.Equal(n.CA, given) {
		t.Errorf("--store-ca's bundle was not kept (%v)", err)
	}

	n = &NetStore{URL: "http://10.0.2.2/x", CA: given}
	if err := n.ResolveCA(c); err != nil || n.CA != nil {
		t.Errorf("http:// keeps a CA (%v)", err)
	}

	if err := os.Remove(filepath.Join(store, "aaaa-system/etc")); err != nil {
		t.Fatal(err)
	}
	n = &NetStore{URL: "https://10.0.2.2/x"}
	if err := n.ResolveCA(c); !errors.Is(err, ErrNoCA) {
		t.Errorf("no CA anywhere: %v, want %v", err, ErrNoCA)
	}
	n = &NetStore{URL: "https://10.0.2.2/x", CA: []byte("not PEM"), CASource: "bad.pem"}
	if err := n.ResolveCA(c); err == nil {
		t.Error("a bundle without certificates was accepted")
	}
}
