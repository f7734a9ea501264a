package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/netboot"
	"github.com/nbimg/nbimg/uki/ukitest"
)

// TestPXEStoreURLErrors: the flag's usage errors come before any build.
func TestPXEStoreURLErrors(t *testing.T) {
	f := testutil.LoadFixture(t)
	key := filepath.Join(t.TempDir(), "key.pub")
	if err := os.WriteFile(key, []byte("cache:"+strings.Repeat("A", 43)+"=\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--store-url", "ftp://h/x"}, "--store-url"},
		{[]string{"--store-giveup", "5"}, "need --store-url"},
		{[]string{"--store-url", "http://h/x", "--compress", "zstd"}, "--compress"},
		{[]string{"--store-url", "http://h/x", "--binary-cache", "http://h/cache", "--public-key", key}, "do not go together"},
	} {
		parent := t.TempDir()
		args := append([]string{"pxe", "-o", filepath.Join(parent, "pxe"), "--toplevel", f.Toplevel, "--closure", f.ClosureDir}, tc.args...)
		code, _, errOut := runApp(t, args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("nbimg %v: exit %d (want %d), stderr %q (want %q)", tc.args, code, exitUsage, errOut, tc.want)
		}
		if left, err := os.ReadDir(parent); err != nil || len(left) != 0 {
			t.Errorf("left behind: %v (%v)", left, err)
		}
	}
}

// checkPXEStoreTree checks a pxe tree written with --store-url base for
// the toplevels: each system's image at tftp/<toplevel>/nix-store.squashfs
// with its URL under base, its manifest entry against the file and
// veritysetup, its initrd the toplevel's followed by a small segment, and
// rdinit= in both menus.
func checkPXEStoreTree(t *testing.T, dir, base string, f *testutil.Fixture, tops ...string) builder.Manifest {
	t.Helper()
	m := readManifest(t, dir)
	if len(m.Entries) != len(tops) {
		t.Fatalf("%d manifest entries, want %d", len(m.Entries), len(tops))
	}
	outputs := map[string]string{}
	for _, o := range m.Outputs {
		outputs[o.Name] = o.SHA256
	}
	cfg := string(testutil.ReadFile(t, filepath.Join(dir, "tftp", "pxelinux.cfg", "default")))
	ipxe := string(testutil.ReadFile(t, filepath.Join(dir, "boot.ipxe")))
	baseInitrd := testutil.ReadFile(t, f.Initrd)
	for i, top := range tops {
		e := m.Entries[i]
		rel := "tftp/" + filepath.Base(top)
		s := e.Store
		if s == nil {
			t.Fatalf("entry %d has no store section", i+1)
		}
		wantURL := strings.TrimSuffix(base, "/") + "/" + filepath.Base(top) + "/nix-store.squashfs"
		if e.Toplevel != top || e.Dir != rel || s.URL != wantURL || s.File != rel+"/nix-store.squashfs" || e.Arch != "x86_64" {
			t.Errorf("entry %d: %+v, store %+v; want %s, URL %s", i+1, e, s, top, wantURL)
		}
		img := filepath.Join(dir, filepath.FromSlash(s.File))
		size, sum := digest(t, img)
		if int64(size) != s.Size || sum != s.SHA256 || outputs[s.File] != sum {
			t.Errorf("%s: %d bytes sha256 %s; manifest says %d %s (outputs %s)", s.File, size, sum, s.Size, s.SHA256, outputs[s.File])
		}
		if out, ok := testutil.VerityVerify(t, img, img, s.VerityRoot, s.DataSize); !ok {
			t.Errorf("veritysetup verify rejects %s:\n%s", s.File, out)
		}
		initrd := testutil.ReadFile(t, filepath.Join(dir, rel, "initrd"))
		if !bytes.HasPrefix(initrd, baseInitrd) || int64(len(initrd)) > int64(len(baseInitrd))+4+s.InitrdSegment || s.InitrdSegment*5 > s.Size {
			t.Errorf("%s/initrd (%d bytes) is not the toplevel's initrd (%d) and a small segment (%d; image %d)", rel, len(initrd), len(baseInitrd), s.InitrdSegment, s.Size)
		}
		if !strings.Contains(e.Cmdline, "rdinit=/nbimg/stage0") {
			t.Errorf("entry %d's command line does not start stage 0: %s", i+1, e.Cmdline)
		}
		if !strings.Contains(cfg, "  INITRD "+filepath.Base(top)+"/initrd\n  APPEND "+e.Cmdline+"\n") {
			t.Errorf("pxelinux.cfg/default has no entry for %s with %q:\n%s", top, e.Cmdline, cfg)
		}
		if !strings.Contains(ipxe, "kernel --name bzImage "+rel+"/bzImage init="+top+"/init initrd=initrd ") || !strings.Contains(ipxe, "rdinit=/nbimg/stage0") {
			t.Errorf("boot.ipxe has no stage-0 entry for %s:\n%s", top, ipxe)
		}
	}
	if m.Store != nil {
		t.Errorf("a pxe manifest has a top-level store section (%+v): each entry has its own", m.Store)
	}
	check.Dnsmasq(t, filepath.Join(dir, netboot.DnsmasqName))
	return m
}

// TestPXEStoreURLBootsHTTP builds a tree of two systems whose stores are
// served over HTTP from the tree's own tftp directory (python3's
// http.server), checks it, fetches each system's image by its URL, and
// boots the first system through pxelinux: stage 0 fetches the image and
// stage 2 checks every store file's sha256.
func TestPXEStoreURLBootsHTTP(t *testing.T) {
	skipShort(t)
	f := testutil.LoadFixture(t)
	requireSyslinux(t)
	qemu.RequireNetboot(t)
	root := copyFixtureStore(t, f)
	top2 := secondGeneration(t, f, root)
	stage0 := stage0File(t)
	dir := filepath.Join(t.TempDir(), "pxe")
	srv := qemu.NewHTTPServer(t, filepath.Join(dir, netboot.TFTPDir), "")
	base := fmt.Sprintf("http://%s:%d/", qemu.GuestHost, srv.Port)
	args := []string{"--quiet", "pxe", "-o", dir, "--comp", "zstd -Xcompression-level 3",
		"--store-root", root, "--toplevel", f.Toplevel, "--toplevel", top2,
		"--store-url", base, "--stage0", stage0, "--serial-console", "ttyS0,115200", "--menu-timeout", "1",
		"--proxy-net", "10.0.2.0/24"}
	if code, _, errOut := runApp(t, args...); code != exitOK {
		t.Fatalf("nbimg %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	m := checkPXEStoreTree(t, dir, base, f, f.Toplevel, top2)

	srv.StartHTTP(t, 0)
	for _, e := range m.Entries {
		hostURL := strings.Replace(e.Store.URL, qemu.GuestHost, "127.0.0.1", 1)
		resp, err := http.Get(hostURL)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || fmt.Sprintf("%x", h.Sum(nil)) != e.Store.SHA256 {
			t.Errorf("GET %s: %s, %v: not the image of %s", hostURL, resp.Status, err, e.Toplevel)
		}
	}

	c := pxeBootConfig(f, dir)
	c.NIC = "virtio-net-pci" // stage 0 loads virtio_net from the system's modules
	c.FailMarkers = append(c.FailMarkers, "nbimg stage 0: FAILED")
	c.Timeout = 8 * time.Minute
	res := qemu.BootT(t, c)
	t.Logf("marker after %.1fs: %s", res.Elapsed.Seconds(), res.Line)
	if !strings.Contains(res.Line, "check=sha256") {
		t.Errorf("the marker %q does not follow a full store check", res.Line)
	}
	for _, w := range []string{"Loading " + filepath.Base(f.Toplevel) + "/bzImage", "sha256 matches"} {
		if !strings.Contains(string(res.Console), w) {
			t.Errorf("the console does not show %q", w)
		}
	}
	requireTopLine(t, res.Console, f.Toplevel)
	if log := srv.Log(); !strings.Contains(log, "GET /"+filepath.Base(f.Toplevel)+"/nix-store.squashfs") {
		t.Errorf("the HTTP server did not serve the first system's image:\n%s", log)
	}
}

// TestPXEStoreURLUKIRootHash: with --uefi uki and an nbd:// store, each
// system's UKI carries rdinit= and its image's dm-verity root hash on the
// .cmdline section (read by binutils), so a signed UKI pins the store.
func TestPXEStoreURLUKIRootHash(t *testing.T) {
	f := testutil.LoadFixture(t)
	ukitest.Stub(t)
	dir := buildPXE(t, "--toplevel", f.Toplevel, "--closure", f.ClosureDir, "--uefi", "uki",
		"--store-url", "nbd://127.0.0.1:10809/systems")
	m := readManifest(t, dir)
	if len(m.Entries) != 1 || m.Entries[0].Store == nil || m.Entries[0].UKI == "" {
		t.Fatalf("manifest entries %+v: want one with a store and a UKI", m.Entries)
	}
	e := m.Entries[0]
	if e.Store.VerityRoot == "" || !strings.HasPrefix(e.Store.URL, "nbd://127.0.0.1:10809/systems/") {
		t.Fatalf("store %+v: want an NBD export under systems/ with a root hash", e.Store)
	}
	line := string(ukitest.DumpSection(t, filepath.Join(dir, e.UKI), ".cmdline"))
	want := "rdinit=/nbimg/stage0 nbimg.roothash=" + e.Store.VerityRoot
	if !strings.Contains(line, want) {
		t.Errorf("%s .cmdline = %q, want it to hold %q", e.UKI, line, want)
	}
}
