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
	got, source, err := n.ResolveCA(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ca) || source != "/nix/store/cccc-cacert/etc/ssl/certs/ca-bundle.crt" {
		t.Errorf("system CA from %q (%d bytes)", source, len(got))
	}
	if n.CA != nil || n.CASource != "" {
		t.Errorf("ResolveCA changed the options: %q", n.CASource)
	}

	given := qemu.NewTestCA(t).CertPEM
	n = &NetStore{URL: "https://10.0.2.2/x", CA: given, CASource: "ca.pem"}
	if got, source, err := n.ResolveCA(c); err != nil || !bytes.Equal(got, given) || source != "ca.pem" {
		t.Errorf("--store-ca's bundle was not kept (%v, from %q)", err, source)
	}

	n = &NetStore{URL: "http://10.0.2.2/x", CA: given}
	if got, _, err := n.ResolveCA(c); err != nil || got != nil {
		t.Errorf("http:// keeps a CA (%v)", err)
	}

	if err := os.Remove(filepath.Join(store, "aaaa-system/etc")); err != nil {
		t.Fatal(err)
	}
	n = &NetStore{URL: "https://10.0.2.2/x"}
	if _, _, err := n.ResolveCA(c); !errors.Is(err, ErrNoCA) {
		t.Errorf("no CA anywhere: %v, want %v", err, ErrNoCA)
	}
	n = &NetStore{URL: "https://10.0.2.2/x", CA: []byte("not PEM"), CASource: "bad.pem"}
	if _, _, err := n.ResolveCA(c); err == nil {
		t.Error("a bundle without certificates was accepted")
	}
}
