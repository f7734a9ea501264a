package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/testutil"
)

// piFirmware makes a stand-in for the Raspberry Pi firmware: the file names
// of nixpkgs' raspberrypifw (share/raspberrypi/boot) with made-up bytes,
// since no test boots a Pi.
func piFirmware(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	boot := filepath.Join(dir, "share/raspberrypi/boot")
	for _, f := range []string{"bootcode.bin", "start.elf", "fixup.dat", "start4.elf", "fixup4.dat",
		"bcm2710-rpi-3-b.dtb", "bcm2711-rpi-4-b.dtb", "bcm2712-rpi-5-b.dtb", "overlays/vc4-kms-v3d.dtbo"} {
		p := filepath.Join(boot, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("stand-in for "+f+"\n"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// piName is the NFS root's name for the fixture system, as raspberry-pi-nix
// names it: nixos-net-image-<nixos-version>-<system>.
func piName(t *testing.T, f *testutil.Fixture) string {
	t.Helper()
	v, err1 := os.ReadFile(filepath.Join(f.Toplevel, "nixos-version"))
	s, err2 := os.ReadFile(filepath.Join(f.Toplevel, "system"))
	if err1 != nil || err2 != nil {
		t.Fatalf("fixture toplevel: %v %v", err1, err2)
	}
	return "nixos-net-image-" + strings.TrimSpace(string(v)) + "-" + strings.TrimSpace(string(s))
}

// buildPi runs `nbimg pi-netimage` on the fixture into a new directory.
func buildPi(t *testing.T, f *testutil.Fixture, fw string, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pi")
	args := append([]string{"--quiet", "pi-netimage", "-o", dir, "--toplevel", f.Toplevel,
		"--closure", f.ClosureDir, "--firmware", fw}, extra...)
	if !slices.Contains(extra, "--nfs-root") {
		args = append(args, "--nfs-root", "192.168.1.2:/srv/nfs/pi")
	}
	code, _, errOut := runApp(t, args...)
	if code != exitOK {
		t.Fatalf("nbimg %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return dir
}

func piRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPiNetimageOutputs(t *testing.T) {
	f := testutil.LoadFixture(t)
	fw := piFirmware(t)
	name := piName(t, f)
	for _, tc := range []struct{ model, kernel, firmware string }{
		{"pi3", "kernel8.img", "bootcode.bin"},
		{"pi4", "kernel8.img", "start4.elf"},
		{"pi5", "kernel_2712.img", ""},
	} {
		t.Run(tc.model, func(t *testing.T) {
			dir := buildPi(t, f, fw, "--model", tc.model, "--serial", "1A2B3C4D",
				"--nfs-options", "proto=tcp", "--cmdline", "fixture.check=none")
			boot := filepath.Join(dir, "boot")

			// config.txt is the golden file of nfsroot's tests for the model.
			golden := piRead(t, filepath.Join("..", "..", "nfsroot", "testdata", "config-"+tc.model+".txt"))
			if got := piRead(t, filepath.Join(boot, "config.txt")); !bytes.Equal(got, golden) {
				t.Errorf("config.txt:\n%s\nwant (nfsroot/testdata/config-%s.txt):\n%s", got, tc.model, golden)
			}
			wantCmdline := "root=/dev/nfs nfsroot=192.168.1.2:/srv/nfs/pi,vers=3,proto=tcp rw ip=dhcp rootwait init=" +
				f.Init + " " + f.KernelParams + " fixture.check=none\n"
			if got := string(piRead(t, filepath.Join(boot, "cmdline.txt"))); got != wantCmdline {
				t.Errorf("cmdline.txt\n got %q\nwant %q", got, wantCmdline)
			}
			for file, src := range map[string]string{tc.kernel: f.Kernel, "initrd": f.Initrd} {
				if !bytes.Equal(piRead(t, filepath.Join(boot, file)), piRead(t, src)) {
					t.Errorf("boot/%s differs from %s", file, src)
				}
			}
			if tc.firmware != "" {
				if _, err := os.Stat(filepath.Join(boot, tc.firmware)); err != nil {
					t.Errorf("firmware: %v", err)
				}
			}

			// The serial-number directory and boot/firmware in the root
			// hold the same files as boot/.
			top := piListFiles(t, boot, "1a2b3c4d")
			for _, other := range []string{filepath.Join(boot, "1a2b3c4d"), filepath.Join(dir, "os", name, "boot", "firmware")} {
				if got := piListFiles(t, other, ""); !maps.Equal(got, top) {
					t.Errorf("%s differs from boot/:\n%v\n%v", other, got, top)
				}
			}

			// The NFS root.
			root := filepath.Join(dir, "os", name)
			var want []string
			for _, p := range f.StorePaths(t) {
				want = append(want, filepath.Base(p))
			}
			ents, err := os.ReadDir(filepath.Join(root, "nix", "store"))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range ents {
				got = append(got, e.Name())
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("nix/store holds %v, want the closure %v", got, want)
			}
			if !bytes.Equal(piRead(t, filepath.Join(root, "nix-path-registration")), piRead(t, filepath.Join(f.ClosureDir, "registration"))) {
				t.Error("nix-path-registration differs from the closure's registration")
			}
			if l, err := os.Readlink(filepath.Join(root, "sbin", "init")); err != nil || l != f.Init {
				t.Errorf("sbin/init -> %q, %v; want %s", l, err, f.Init)
			}
			if os.Geteuid() == 0 {
				piCheckOwnedByRoot(t, root)
			}

			m := readManifest(t, dir)
			if m.Command != "pi-netimage" || m.Pi == nil || m.Pi.Model != tc.model || m.Pi.Name != name || m.Pi.Kernel != tc.kernel {
				t.Errorf("manifest %+v %+v", m, m.Pi)
			}
			if m.Inputs.Cmdline+"\n" != wantCmdline {
				t.Errorf("manifest kernel_cmdline %q", m.Inputs.Cmdline)
			}
			for _, o := range m.Outputs {
				if _, sum := digest(t, filepath.Join(dir, o.Name)); sum != o.SHA256 {
					t.Errorf("manifest sha256 of %s is %s, file has %s", o.Name, o.SHA256, sum)
				}
			}
			if len(m.Outputs) != len(top)+3 {
				t.Errorf("manifest lists %d outputs, want boot/'s %d and 3", len(m.Outputs), len(top))
			}
		})
	}
}

// listFiles maps the regular files under dir (skipping the directory
// skip) to their sha256.
func piListFiles(t *testing.T, dir, skip string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && skip != "" && d.Name() == skip {
			return fs.SkipDir
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			_, out[rel] = digest(t, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func piCheckOwnedByRoot(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s is owned by %d:%d", p, st.Uid, st.Gid)
			return fs.SkipAll
		}
		return nil
	})
	testutil.NoError(t, err)
}

// TestPiNetimageNixAcceptsRoot has real Nix load the registration into a
// store rooted at os/NAME and check every path's contents against it.
func TestPiNetimageNixAcceptsRoot(t *testing.T) {
	f := testutil.LoadFixture(t)
	dir := buildPi(t, f, piFirmware(t))
	root := filepath.Join(dir, "os", piName(t, f))
	got := check.NixLoadVerify(t, root, piRead(t, filepath.Join(root, "nix-path-registration")), f.Toplevel)
	if strings.Join(got, " ") != strings.Join(f.StorePaths(t), " ") {
		t.Errorf("the loaded database's closure of the toplevel:\n%v\nwant\n%v", got, f.StorePaths(t))
	}
	// The check has teeth: one changed byte fails it.
	var victim string
	for _, p := range f.StorePaths(t) {
		if strings.HasSuffix(p, "-fixture-blobs") {
			victim = filepath.Join(root, p, "text-4KiB")
		}
	}
	if err := os.Chmod(victim, 0o644); err != nil {
		t.Fatal(err)
	}
	b := piRead(t, victim)
	b[100] ^= 1
	if err := os.WriteFile(victim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	check.NixVerifyFails(t, root)
}

func TestPiNetimageDnsmasqAccepts(t *testing.T) {
	f := testutil.LoadFixture(t)
	for _, extra := range [][]string{nil, {"--proxy-net", "192.168.1.0/24", "--proxy-net", "10.0.0.5"}} {
		dir := buildPi(t, f, piFirmware(t), extra...)
		conf := filepath.Join(dir, "dnsmasq.conf")
		text := piRead(t, conf)
		if !bytes.Contains(text, []byte("tftp-root="+filepath.Join(dir, "boot")+"\n")) ||
			!bytes.Contains(text, []byte("pxe-service=0,\"Raspberry Pi Boot\"\n")) {
			t.Errorf("dnsmasq.conf:\n%s", text)
		}
		if extra != nil && !bytes.Contains(text, []byte("dhcp-range=192.168.1.0,proxy,255.255.255.0\ndhcp-range=10.0.0.5,proxy\n")) {
			t.Errorf("dnsmasq.conf lacks the proxy ranges:\n%s", text)
		}
		check.Dnsmasq(t, conf)
	}
}

// treeDigest hashes every entry's name, type, mode, modification time and
// content (or link target) below dir.
func piTreeDigest(t *testing.T, dir string, skip ...string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if slices.Contains(skip, rel) {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(h, "%s %s %d %d:%d", rel, fi.Mode(), st.Mtim.Sec, st.Uid, st.Gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			testutil.NoError(t, err)
			fmt.Fprintf(h, " -> %s", l)
		case fi.Mode().IsRegular() && rel != "." && !strings.HasPrefix(rel, "manifest"):
			_, sum := digest(t, p)
			fmt.Fprintf(h, " %s", sum)
		}
		h.Write([]byte{'\n'})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func TestPiNetimageReproducible(t *testing.T) {
	forEachFixture(t, func(t *testing.T, f *testutil.Fixture) {
		fw := piFirmware(t)
		a := buildPi(t, f, fw, "--tftp-root", "/srv/pi/boot", "--serial", "00c0ffee")
		b := buildPi(t, f, fw, "--tftp-root", "/srv/pi/boot", "--serial", "00c0ffee")
		// The output directories themselves get the time of the rename.
		if da, db := piTreeDigest(t, a, ".", "manifest.json", "exports", "dnsmasq.conf", "os"), piTreeDigest(t, b, ".", "manifest.json", "exports", "dnsmasq.conf", "os"); da != db {
			t.Error("two builds of the same input differ")
		}
		for _, n := range []string{"exports", "dnsmasq.conf"} {
			if !bytes.Equal(piRead(t, filepath.Join(a, n)), piRead(t, filepath.Join(b, n))) {
				t.Errorf("%s differs", n)
			}
		}
		sameManifest(t, a, b)
	})
}

func TestPiNetimageBadInput(t *testing.T) {
	f := testutil.LoadFixture(t)
	fw := piFirmware(t)
	base := []string{"--toplevel", f.Toplevel, "--closure", f.ClosureDir}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no nfs root", append([]string{"--firmware", fw}, base...), exitUsage, "--nfs-root"},
		{"relative nfs path", append([]string{"--firmware", fw, "--nfs-root", "nas:srv"}, base...), exitUsage, "nas:srv"},
		{"bad model", append([]string{"--firmware", fw, "--nfs-root", "nas:/srv", "--model", "pi2"}, base...), exitUsage, "pi2"},
		{"bad serial", append([]string{"--firmware", fw, "--nfs-root", "nas:/srv", "--serial", "12345"}, base...), exitUsage, "12345"},
		{"bad proxy net", append([]string{"--firmware", fw, "--nfs-root", "nas:/srv", "--proxy-net", "eth0"}, base...), exitUsage, "eth0"},
		{"bad name", append([]string{"--firmware", fw, "--nfs-root", "nas:/srv", "--name", "a/b"}, base...), exitUsage, "a/b"},
		{"no toplevel", []string{"--firmware", fw, "--nfs-root", "nas:/srv", "--closure", f.ClosureDir}, exitUsage, "--toplevel"},
		{"no firmware", append([]string{"--nfs-root", "nas:/srv"}, base...), exitFailure, "--firmware"},
		{"firmware without start4.elf", append([]string{"--nfs-root", "nas:/srv", "--firmware", t.TempDir()}, base...), exitFailure, "start4.elf"},
		{"nfs version in options", append([]string{"--firmware", fw, "--nfs-root", "nas:/srv", "--nfs-options", "vers=4"}, base...), exitUsage, "vers=4"},
		{"missing kernel", append([]string{"--firmware", fw, "--nfs-root", "nas:/srv", "--kernel", "/no/such/kernel"}, base...), exitFailure, "/no/such/kernel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			out := filepath.Join(parent, "pi")
			code, _, errOut := runApp(t, append([]string{"pi-netimage", "-o", out}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("error does not name %q: %q", tc.want, errOut)
			}
			if code == exitFailure && strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
				t.Errorf("more than one line: %q", errOut)
			}
			if left, err := os.ReadDir(parent); err != nil || len(left) != 0 {
				t.Errorf("left behind: %v (%v)", left, err)
			}
		})
	}
}

// TestPiNetimageToplevelFirmware uses a made-up system under a store root:
// its firmware entry holds the Pi firmware and its dtbs the device trees;
// it has no nixos-version, so the root needs --name.
func TestPiNetimageToplevelFirmware(t *testing.T) {
	storeRoot := t.TempDir()
	top := "/nix/store/00000000000000000000000000000000-nixos-system-pi-24.11"
	host := filepath.Join(storeRoot, top)
	for name, content := range map[string]string{
		"kernel": "arm64 Image", "initrd": "initrd", "init": "#!/bin/sh\n", "kernel-params": "console=ttyS1,115200",
		"firmware/share/raspberrypi/boot/start4.elf": "start4", "firmware/share/raspberrypi/boot/fixup4.dat": "fixup4",
		"firmware/share/raspberrypi/boot/bcm2711-rpi-4-b.dtb": "firmware's dtb",
		"dtbs/broadcom/bcm2711-rpi-4-b.dtb":                   "kernel's dtb", "dtbs/overlays/hat.dtbo": "hat",
	} {
		p := filepath.Join(host, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reg := filepath.Join(t.TempDir(), "registration")
	testutil.NoError(t, os.WriteFile(reg, []byte(top+"\nsha256:0000000000000000000000000000000000000000000000000000\n0\n\n0\n"), 0o644))
	parent := t.TempDir()
	dir := filepath.Join(parent, "pi")
	args := []string{"pi-netimage", "-o", dir, "--toplevel", top, "--closure", reg, "--store-root", storeRoot,
		"--nfs-root", "nas:/srv/pi"}
	code, _, errOut := runApp(t, args...)
	if code != exitFailure || !strings.Contains(errOut, "nixos-version") || !strings.Contains(errOut, "--name") {
		t.Fatalf("without nixos-version: exit %d, %q; want a failure asking for --name", code, errOut)
	}
	code, _, errOut = runApp(t, append(args, "--name", "pi-test")...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(errOut, "warning: the system has no dtbs") {
		t.Errorf("warned about dtbs: %s", errOut)
	}
	for file, want := range map[string]string{
		"boot/start4.elf": "start4", "boot/kernel8.img": "arm64 Image", "boot/bcm2711-rpi-4-b.dtb": "kernel's dtb",
		"boot/overlays/hat.dtbo": "hat", "os/pi-test/boot/firmware/start4.elf": "start4",
	} {
		if got := string(piRead(t, filepath.Join(dir, file))); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if got := string(piRead(t, filepath.Join(dir, "boot/cmdline.txt"))); got !=
		"root=/dev/nfs nfsroot=nas:/srv/pi,vers=3 rw ip=dhcp rootwait init="+top+"/init console=ttyS1,115200\n" {
		t.Errorf("cmdline.txt = %q", got)
	}
	m := readManifest(t, dir)
	if m.Pi == nil || m.Pi.Firmware != filepath.Join(host, "firmware/share/raspberrypi/boot") {
		t.Errorf("manifest pi %+v", m.Pi)
	}
}
