package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/binarycache"
	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/netboot"
)

// `nbimg pxe --binary-cache URL --public-key FILE`: each entry's initrd is
// the toplevel's own, byte for byte (no store image), and both menus and
// the manifest carry the substituting parameters on the entry's command
// line.
func TestPXEBinaryCacheMode(t *testing.T) {
	f := testutil.LoadFixture(t)
	requireSyslinux(t)
	k, err := binarycache.GenerateKey("pxe-test-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(t.TempDir(), "public.key")
	if err := os.WriteFile(pub, []byte(k.Public().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	url := "http://10.0.2.2:8080/cache"
	dir := buildPXE(t, "--toplevel", f.Toplevel, "--closure", f.ClosureDir, "--binary-cache", url, "--public-key", pub)

	want := netboot.Substitute{URL: url, PublicKey: k.Public().String()}.KernelParams(f.Toplevel)
	if !strings.Contains(want, "nbimg.trusted-key="+k.Public().String()) {
		t.Fatalf("parameters %q lack the key", want)
	}
	got, err := os.ReadFile(filepath.Join(dir, "tftp", path.Base(f.Toplevel), netboot.InitrdName))
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(f.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, base) {
		t.Fatalf("the entry's initrd (%d bytes) is not the toplevel's (%d bytes)", len(got), len(base))
	}
	for _, name := range []string{"tftp/" + netboot.PXELinuxConfig, netboot.MenuName} {
		text, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(text), "init="+f.Init) || !strings.Contains(string(text), want) {
			t.Errorf("%s lacks init= or %q:\n%s", name, want, text)
		}
	}
	var m builder.Manifest
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Entries) != 1 || !strings.HasSuffix(m.Entries[0].Cmdline, want) {
		t.Fatalf("manifest entries %+v", m.Entries)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--binary-cache", url}, "go together"},
		{[]string{"--public-key", pub}, "go together"},
		{[]string{"--binary-cache", "ftp://x", "--public-key", pub}, "want http://"},
		{[]string{"--binary-cache", url, "--public-key", f.Initrd}, "public key"},
	} {
		args := append([]string{"pxe", "-o", filepath.Join(t.TempDir(), "p"), "--toplevel", f.Toplevel, "--closure", f.ClosureDir}, tc.args...)
		code, _, stderr := runApp(t, args...)
		if code == exitOK || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q, want %q", tc.args, code, stderr, tc.want)
		}
	}
}
