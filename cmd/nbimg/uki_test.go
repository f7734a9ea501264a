package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/uki/ukitest"
)

// TestNetbootUKI builds `nbimg netboot --uki`, signed with the snakeoil
// key, and `nbimg uki` with one worker: the two nixos.efi are the same
// bytes; sbverify accepts the signature; objdump lists ukify's layout;
// .initrd, .linux and .cmdline hold the netboot directory's initrd,
// kernel and command line (without initrd=).
func TestNetbootUKI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds UKIs of the fixture (tens of seconds)")
	}
	f := testutil.LoadFixture(t)
	ukitest.Stub(t)
	key, cert := ukitest.Snakeoil(t)
	dir := buildNetboot(t, f, "--uki", "--sign-key", key, "--sign-cert", cert)
	efi := filepath.Join(dir, "nixos.efi")

	if out, ok := ukitest.Sbverify(t, cert, efi); !ok {
		t.Errorf("sbverify refuses nixos.efi:\n%s", out)
	}
	secs := ukitest.Objdump(t, efi)
	var names []string
	for _, s := range secs[len(secs)-5:] {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != ".osrel .cmdline .uname .initrd .linux" {
		t.Errorf("last sections %q, want ukify's .osrel .cmdline .uname .initrd .linux", got)
	}
	for name, file := range map[string]string{".initrd": "initrd", ".linux": "bzImage"} {
		want, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ukitest.DumpSection(t, efi, name), want) {
			t.Errorf("%s differs from %s", name, file)
		}
	}
	wantLine := "init=" + f.Init + " " + f.KernelParams
	if got := string(ukitest.DumpSection(t, efi, ".cmdline")); got != wantLine {
		t.Errorf(".cmdline %q, want %q", got, wantLine)
	}
	if got := string(ukitest.DumpSection(t, efi, ".uname")); !strings.Contains(f.Kernel, got) || got == "" {
		t.Errorf(".uname %q is not the release in the kernel's path %s", got, f.Kernel)
	}
	listed := false
	for _, o := range readManifest(t, dir).Outputs {
		listed = listed || o.Name == "nixos.efi"
	}
	if !listed {
		t.Error("manifest.json does not list nixos.efi")
	}

	// nbimg uki, one worker: the same bytes.
	one := filepath.Join(t.TempDir(), "one.efi")
	args := []string{"--quiet", "uki", "-o", one, "--toplevel", f.Toplevel, "--closure", f.ClosureDir,
		"--comp", "zstd -Xcompression-level 3", "--processors", "1", "--sign-key", key, "--sign-cert", cert}
	if code, _, errOut := runApp(t, args...); code != exitOK {
		t.Fatalf("nbimg %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	_, a := digest(t, efi)
	_, b := digest(t, one)
	if a != b {
		t.Errorf("netboot --uki and uki --processors 1 differ: %s vs %s", a, b)
	}
	ents, err := os.ReadDir(filepath.Dir(one))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Errorf("nbimg uki left files beside its output: %v", ents)
	}
}

func TestUKIErrors(t *testing.T) {
	f := testutil.LoadFixture(t)
	ukitest.Stub(t)
	key, cert := ukitest.Snakeoil(t)
	out := filepath.Join(t.TempDir(), "x.efi")
	base := []string{"--quiet", "uki", "-o", out, "--toplevel", f.Toplevel, "--closure", f.ClosureDir}
	wrongPass := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrongPass, []byte("not snakeoil\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--sign-key", key}, exitUsage, "go together"},
		{[]string{"--sign-key", ukitest.SnakeoilKey, "--sign-cert", cert}, exitFailure, "--sign-key " + ukitest.SnakeoilKey + " is encrypted: give its passphrase with --sign-key-pass-file"},
		{[]string{"--sign-key", ukitest.SnakeoilKey, "--sign-cert", cert, "--sign-key-pass-file", wrongPass}, exitFailure, "the passphrase (from --sign-key-pass-file " + wrongPass + ") does not decrypt it"},
		{[]string{"--sign-key-pass-file", wrongPass}, exitUsage, "needs --sign-key"},
		{[]string{"--sign-key", cert, "--sign-cert", cert}, exitFailure, "not a private key"},
		{[]string{"--stub", filepath.Join(t.TempDir(), "none")}, exitFailure, "stub"},
		{[]string{"--stub", f.Init}, exitFailure, "stub"},
	} {
		code, _, errOut := runApp(t, append(base, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, %q; want exit %d mentioning %q", tc.args, code, errOut, tc.code, tc.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%v: output written despite the error", tc.args)
		}
	}
	code, _, errOut := runApp(t, "--quiet", "netboot", "-o", t.TempDir(), "--toplevel", f.Toplevel, "--sign-key", key, "--sign-cert", cert)
	if code != exitUsage || !strings.Contains(errOut, "--uki") {
		t.Errorf("netboot --sign-key without --uki: exit %d, %q", code, errOut)
	}
}

// TestNetbootUKIStoreURL checks that with --store-url the UKI carries what
// the tree boots with: the small stage-0 initrd and rdinit= on its signed
// command line, so the signature covers the way to the store too.
func TestNetbootUKIStoreURL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a UKI of the fixture (tens of seconds)")
	}
	f := testutil.LoadFixture(t)
	ukitest.Stub(t)
	dir := buildNetboot(t, f, "--uki", "--store-url", "http://10.0.2.2:8080/nix-store.squashfs", "--stage0", stage0File(t))
	efi := filepath.Join(dir, "nixos.efi")
	initrd, err := os.ReadFile(filepath.Join(dir, "initrd"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ukitest.DumpSection(t, efi, ".initrd"), initrd) {
		t.Error(".initrd is not the tree's stage-0 initrd")
	}
	want := "init=" + f.Init + " " + f.KernelParams + " rdinit=/nbimg/stage0"
	if got := string(ukitest.DumpSection(t, efi, ".cmdline")); got != want {
		t.Errorf(".cmdline %q, want %q", got, want)
	}
}
