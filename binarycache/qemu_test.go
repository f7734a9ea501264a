package binarycache_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/binarycache"
	"github.com/nbimg/nbimg/binarycache/cachecheck"
	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/initrd"
	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/netboot"
	"github.com/nbimg/nbimg/nixstore"
)

// The "NixOS on Clients" flow, end to end: a client boots the fixture's
// kernel and initrd from the PXE tree of `nbimg pxe --binary-cache`, its
// stage 1 (testdata/fixture/stage-1-substitute.sh,
// with Debian's nix-store) substitutes the system from nbimg's cache over
// HTTP onto a virtio disk with only the cache's key trusted, and stage 2
// checks the store. Then the next generation goes into the same cache, and
// the client, booting it with the same disk, downloads only the paths that
// changed, as the server's log shows.
func TestQEMUSubstitutingBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("two emulated boots")
	}
	qemu.Require(t)
	python := testutil.Tool(t, "python3", "python3")
	mkfs := testutil.Tool(t, "mkfs.ext4", "e2fsprogs")
	testutil.Tool(t, "nix-build", "nix-bin")
	nixStore := testutil.Tool(t, "nix-store", "nix-bin")
	testutil.Tool(t, "ldd", "libc-bin")
	f, sk, pub, closure := nixSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	kver, err := os.ReadFile(filepath.Join(filepath.Dir(f.Kernel), "version"))
	if err != nil {
		t.Fatal(err)
	}
	segment := substituteSegment(t, strings.TrimSpace(string(kver)), nixStore)

	// The next generation: the fixture at version 1.1, whose paths named
	// with the version (and those depending on them) differ.
	next := filepath.Join(t.TempDir(), "next")
	build := exec.CommandContext(ctx, "nix-build", filepath.Join("..", "testdata", "fixture", "default.nix"),
		"--argstr", "kernelVersion", strings.TrimSpace(string(kver)), "--argstr", "version", "1.1",
		"--option", "substituters", "", "-o", next)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the next generation: %v\n%s", err, out)
	}
	top2, err := filepath.EvalSymlinks(next)
	if err != nil {
		t.Fatal(err)
	}
	closure2, err := nixstore.NixStoreClosure(ctx, []string{top2})
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	for _, p := range closure2.Paths {
		if _, ok := closure.Lookup(p.Path); !ok {
			changed++
		}
	}
	if changed == 0 || changed == len(closure2.Paths) {
		t.Fatalf("the next generation shares %d of %d paths: want some, not all", len(closure2.Paths)-changed, len(closure2.Paths))
	}

	dir := filepath.Join(t.TempDir(), "cache")
	o := binarycache.Options{Compression: binarycache.Zstd, Level: 3, Keys: []binarycache.SecretKey{sk}, WriteNAR: nixstore.WriteNAR}
	if _, err := binarycache.Write(ctx, dir, closurePaths(closure), o); err != nil {
		t.Fatal(err)
	}
	srv, err := cachecheck.Serve(ctx, python, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	guestURL := strings.Replace(srv.URL, "127.0.0.1", "10.0.2.2", 1)

	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 512<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, mkfs, "-q", "-F", "-L", "nbimg-store", disk).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}

	boot := func(top, initrdFile, extra string) *qemu.Result {
		t.Helper()
		ird, err := os.ReadFile(initrdFile)
		if err != nil {
			t.Fatal(err)
		}
		for len(ird)%4 != 0 {
			ird = append(ird, 0)
		}
		first := filepath.Join(t.TempDir(), "initrd")
		if err := os.WriteFile(first, append(ird, segment...), 0o644); err != nil {
			t.Fatal(err)
		}
		params, err := os.ReadFile(filepath.Join(top, "kernel-params"))
		if err != nil {
			t.Fatal(err)
		}
		return qemu.BootT(t, qemu.Config{
			Kernel: filepath.Join(top, "kernel"),
			Initrd: first,
			Cmdline: fmt.Sprintf("init=%s/init %s nbimg.toplevel=%s nbimg.substituter=%s nbimg.trusted-key=%s %s",
				top, strings.TrimSpace(string(params)), top, guestURL, pub, extra),
			Memory:      1024,
			Timeout:     15 * time.Minute,
			Marker:      f.Marker,
			FailMarkers: []string{f.FailMarker},
			ExtraArgs:   []string{"-nic", "user,model=virtio-net-pci", "-drive", "file=" + disk + ",format=raw,if=virtio"},
		})
	}

	// First boot: through the PXE tree of `nbimg pxe --binary-cache`: iPXE
	// loads boot.ipxe, the kernel and the toplevel's initrd (with the
	// substituting segment appended) over TFTP, and the entry's command
	// line says what to substitute from where. The whole closure comes
	// over HTTP; stage 2 checks every file's sha256.
	res := pxeBoot(t, f, guestURL, pub, segment, disk)
	if !strings.Contains(res.Line, "check=sha256") {
		t.Errorf("the marker %q is not after a full store check", res.Line)
	}
	if got := cachecheck.NarFetches(srv.Requests()); got != len(closure.Paths) {
		t.Fatalf("first boot downloaded %d NARs for a closure of %d paths", got, len(closure.Paths))
	}
	checkFetched(t, res.Console, len(closure.Paths))

	// The next generation joins the cache; the client boots it with the
	// same disk and downloads only what changed.
	m, err := binarycache.Write(ctx, dir, closurePaths(closure2), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Added) != changed || m.Kept != len(closure2.Paths)-changed {
		t.Fatalf("the next generation added %d paths and kept %d; %d changed", len(m.Added), m.Kept, changed)
	}
	initrd2, err := filepath.EvalSymlinks(filepath.Join(top2, "initrd"))
	if err != nil {
		t.Fatal(err)
	}
	res = boot(top2, initrd2, "fixture.check=none")
	reqs := srv.Requests()
	if got := cachecheck.NarFetches(reqs); got != changed {
		t.Fatalf("second boot downloaded %d NARs, want the %d changed paths: %v", got, changed, reqs)
	}
	for _, r := range reqs {
		if strings.HasPrefix(r.Path, "/nar/") {
			found := false
			for _, a := range m.Added {
				found = found || "/"+a.URL == r.Path
			}
			if !found {
				t.Errorf("second boot fetched %s, which is not a path of the new generation", r.Path)
			}
		}
	}
	checkFetched(t, res.Console, changed)
	t.Logf("second generation: %d of %d paths fetched (%d NAR bytes of %d)", changed, len(closure2.Paths), m.AddedNarSize, closure2.NarSize())
}

// pxeBoot writes the PXE tree of the fixture for a binary cache, appends
// the substituting segment (gzip-compressed, as a second initramfs
// archive) to the entry's initrd, and boots boot.ipxe with the disk.
func pxeBoot(t *testing.T, f *testutil.Fixture, url, pub string, segment []byte, disk string) *qemu.Result {
	t.Helper()
	if _, err := netboot.FindSyslinux(""); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	qemu.RequireNetboot(t)
	cl, err := nixstore.Load(context.Background(), nixstore.Input{Toplevel: f.Toplevel, Closure: f.ClosureDir})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "pxe")
	if _, err := builder.PXE(context.Background(), []*nixstore.Closure{cl}, dir, builder.PXEOptions{
		Timeout:    time.Second,
		Substitute: &netboot.Substitute{URL: url, PublicKey: pub},
	}); err != nil {
		t.Fatal(err)
	}
	entryInitrd := filepath.Join(dir, netboot.TFTPDir, path.Base(f.Toplevel), netboot.InitrdName)
	ird, err := os.ReadFile(entryInitrd)
	if err != nil {
		t.Fatal(err)
	}
	for len(ird)%4 != 0 {
		ird = append(ird, 0)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(segment); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(entryInitrd, append(ird, gz.Bytes()...), 0o644); err != nil {
		t.Fatal(err)
	}
	return qemu.BootT(t, qemu.Config{
		TFTPDir:     dir,
		BootFile:    netboot.MenuName,
		NIC:         "virtio-net-pci",
		Memory:      1024,
		Timeout:     15 * time.Minute,
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
		ExtraArgs:   []string{"-drive", "file=" + disk + ",format=raw,if=virtio"},
	})
}

// checkFetched checks stage 1's count of substituted paths on the console.
func checkFetched(t *testing.T, console []byte, want int) {
	t.Helper()
	m := regexp.MustCompile(`substituted \S+: ([0-9]+) paths fetched`).FindSubmatch(console)
	if m == nil {
		t.Fatalf("stage 1 did not report what it substituted:\n%s", qemu.Tail(console, 30))
	}
	if string(m[1]) != fmt.Sprint(want) {
		t.Fatalf("stage 1 fetched %s paths, want %d", m[1], want)
	}
}

// substituteSegment returns an uncompressed newc cpio segment that turns
// the fixture's initrd into a substituting one: stage-1-substitute.sh as
// /init, Debian's nix-store with the libraries ldd lists under /lib/nix,
// and virtio_blk.
func substituteSegment(t *testing.T, kver, nixStore string) []byte {
	t.Helper()
	a, err := initrd.NewArchive(time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	addFile := func(name string, perm os.FileMode, host string) {
		data, err := os.ReadFile(host)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.AddBytes(name, perm, data); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"lib", "lib/nix", "lib/modules", "lib/modules/" + kver, "etc", "etc/modules-load.d"} {
		if err := a.AddDir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	addFile("init", 0o755, filepath.Join("..", "testdata", "fixture", "stage-1-substitute.sh"))
	// nix-store is a link to the multi-call nix binary, which acts on its
	// name: copy it as nix-store.
	addFile("lib/nix/nix-store", 0o755, nixStore)
	out, err := exec.Command("ldd", nixStore).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", nixStore, err)
	}
	loader := false
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		var lib string
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			lib = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			lib = f[0]
		default:
			continue
		}
		if path.Base(lib) == "ld-linux-x86-64.so.2" {
			loader = true
		}
		addFile("lib/nix/"+path.Base(lib), 0o755, lib)
	}
	if !loader {
		t.Fatalf("no ld-linux-x86-64.so.2 in ldd's output:\n%s", out)
	}
	addFile("lib/modules/"+kver+"/virtio_blk.ko", 0o644, "/lib/modules/"+kver+"/kernel/drivers/block/virtio_blk.ko")
	// Nix asks who it runs as; glibc's files backend is in libc itself.
	for name, text := range map[string]string{
		"etc/modules-load.d/substitute": "virtio_blk.ko\n",
		"etc/passwd":                    "root:x:0:0:root:/tmp:/bin/sh\n",
		"etc/group":                     "root:x:0:\n",
		"etc/nsswitch.conf":             "passwd: files\ngroup: files\nhosts: files\n",
	} {
		if err := a.AddBytes(name, 0o644, []byte(text)); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if _, err := a.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
