package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/qemu"
	"github.com/nbimg/nbimg/internal/testutil"
)

// The NFS round trip: nbimg pi-netimage writes the fixture system's NFS
// root, nfs-ganesha (VFS backend) serves it over NFSv3, and QEMU boots the
// kernel and initrd from the written boot/ with the written cmdline.txt;
// the fixture's stage 1 mounts the root over NFS and its stage 2 checks
// every store file's sha256 before printing the marker. The export speaks
// NFSv3 only, so a boot that reaches the marker mounted its root with
// NFSv3. qemu.ServeNFS runs the server, with the rpcbind NFSv3 needs, in
// namespaces of its own that QEMU joins.

func TestPiNetimageBootsNFS(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU over NFS (about a minute under TCG)")
	}
	f := testutil.LoadFixture(t)
	qemu.Require(t)
	// The x86 fixture's bzImage, under the Pi's name.
	piBootNFS(t, f, "fixture.root=nfs", func(c qemu.Config) qemu.Config { return c })
}

// piBootNFS writes f's Pi tree with extra on cmdline.txt, serves its root
// over NFSv3 and boots boot/kernel8.img with boot/initrd and cmdline.txt
// in the QEMU that guest makes of the configuration, until the marker.
func piBootNFS(t *testing.T, f *testutil.Fixture, extra string, guest func(qemu.Config) qemu.Config) *qemu.Result {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pi")
	root := filepath.Join(dir, "os", piName(t, f))
	args := []string{"--quiet", "pi-netimage", "-o", dir, "--toplevel", f.Toplevel, "--closure", f.ClosureDir,
		"--firmware", piFirmware(t), "--nfs-root", qemu.GuestHost + ":" + root, "--nfs-options", "proto=tcp,mountproto=tcp",
		"--cmdline", extra}
	if code, _, errOut := runApp(t, args...); code != exitOK {
		t.Fatalf("nbimg %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	cmdline := strings.TrimSpace(string(piRead(t, filepath.Join(dir, "boot", "cmdline.txt"))))

	srv := qemu.ServeNFS(t, root, qemu.NFSOptions{Version: 3})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	c := guest(qemu.Config{
		Kernel:      filepath.Join(dir, "boot", "kernel8.img"),
		Initrd:      filepath.Join(dir, "boot", "initrd"),
		Cmdline:     cmdline,
		Marker:      f.Marker,
		FailMarkers: []string{f.FailMarker},
		ExtraArgs:   []string{"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"},
	})
	srv.Attach(t, &c)
	if os.Getenv(qemu.ConsoleEnv) == "1" {
		c.Console = os.Stderr
	}
	res, err := qemu.Boot(ctx, c)
	if err != nil {
		var be *qemu.BootError
		if errors.As(err, &be) {
			t.Fatalf("%v\n--- ganesha log (tail) ---\n%s", err, srv.LogTail(15))
		}
		t.Fatal(err)
	}
	t.Logf("marker after %.1fs over NFSv3: %s", res.Elapsed.Seconds(), res.Line)
	console := string(res.Console)
	if !strings.Contains(console, "nfsroot="+qemu.GuestHost+":"+root+",vers=3") {
		t.Errorf("the guest did not boot with cmdline.txt's nfsroot=")
	}
	return res
}
