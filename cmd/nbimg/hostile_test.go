package main

// The hostile test group (go test -run Hostile ./cmd/nbimg): the real
// binary under signals, full disks, other users, a umask of 077, special
// files as targets, odd paths and absurd flag values. Every case checks the
// exit code, one clear error line, the previous output intact (or none),
// no temporaries, and nothing changed outside -o.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/hostile"
	"github.com/nbimg/nbimg/internal/testutil"
)

const hostileComp = "zstd -Xcompression-level 1"

// hostileCommand is one command line writing out.
type hostileCommand struct {
	name string
	args func(s hostile.System, out string) []string
}

func hostileCommands(t *testing.T) []hostileCommand {
	comp := []string{"--comp", hostileComp}
	cmds := []hostileCommand{
		{"squashfs-dir", func(s hostile.System, out string) []string {
			return append([]string{"squashfs", "-o", out}, append(comp, filepath.Join(s.StoreRoot, "nix"))...)
		}},
		{"squashfs-closure", func(s hostile.System, out string) []string {
			return append(append([]string{"squashfs", "-o", out}, comp...), s.StoreArgs()...)
		}},
		{"closure", func(s hostile.System, out string) []string {
			return []string{"closure", "-o", out, "--store-root", s.StoreRoot, s.Toplevel}
		}},
		{"initrd", func(s hostile.System, out string) []string {
			return append(append([]string{"initrd", "-o", out}, comp...), s.StoreArgs()...)
		}},
		{"netboot", func(s hostile.System, out string) []string {
			return append(append([]string{"netboot", "-o", out}, comp...), s.StoreArgs()...)
		}},
		{"kexec-tree", func(s hostile.System, out string) []string {
			return append(append([]string{"kexec-tree", "--tarball", "-o", out}, comp...), s.StoreArgs()...)
		}},
		{"pi-netimage", func(s hostile.System, out string) []string {
			return append([]string{"pi-netimage", "-o", out, "--nfs-root", "192.168.1.2:/srv/pi", "--firmware", s.Firmware}, s.StoreArgs()...)
		}},
	}
	if _, err := os.Stat("/usr/lib/PXELINUX/pxelinux.0"); err == nil {
		cmds = append(cmds, hostileCommand{"pxe", func(s hostile.System, out string) []string {
			return append(append([]string{"pxe", "-o", out}, comp...), s.StoreArgs()...)
		}})
	} else {
		testutil.Tool(t, "pxelinux-is-installed", "pxelinux")
	}
	return cmds
}

// nbimgCmd makes the command running the binary with args, reproducible.
func nbimgCmd(t *testing.T, args ...string) *exec.Cmd {
	cmd := exec.Command(hostile.Binary(t), args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1")
	return cmd
}

func checkNoTemporaries(t *testing.T, what, dir string) {
	t.Helper()
	if tmp := hostile.Temporaries(t, dir); len(tmp) > 0 {
		t.Errorf("%s: temporaries left in %s: %q", what, dir, tmp)
	}
}

// TestHostileSignals interrupts every command at random points with
// SIGINT, SIGTERM and SIGHUP, once and twice: each run either finishes
// (exit 0) or says "interrupted" (exit 130); the previous output is intact
// (the same input gives the same output, so either way the tree matches)
// and no temporary is left.
func TestHostileSignals(t *testing.T) {
	skipHostileInShort(t)
	s := hostile.NewSystem(t, 6<<20)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for _, c := range hostileCommands(t) {
		t.Run(c.name, func(t *testing.T) {
			dir := hostile.Dir(t)
			out := filepath.Join(dir, "out")
			if r := hostile.Run(t, nbimgCmd(t, c.args(s, out)...)); r.Code != 0 {
				t.Fatalf("first run: %v", r)
			}
			want := hostile.Listing(t, out)
			interrupted := 0
			for i, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT, syscall.SIGHUP, syscall.SIGTERM} {
				twice := i >= 3
				cmd := nbimgCmd(t, c.args(s, out)...)
				wait, done := hostile.StartDone(t, cmd)
				if i%3 != 2 {
					// Once the work is under way (a temporary exists).
					hostile.WaitTemporary(dir, done)
				}
				time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
				_ = cmd.Process.Signal(sig) // it may have ended already
				if twice {
					time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
					_ = cmd.Process.Signal(sig)
				}
				r := wait()
				what := fmt.Sprintf("%s %v (run %d)", c.name, sig, i)
				switch {
				case r.Code == 0:
				case r.Signal != 0 && i%3 == 2:
					// Killed before main set up its handlers: nothing
					// was written yet.
				case r.Code == exitSignal && len(hostile.ErrorLines(r.Stderr)) == 1 &&
					(strings.Contains(r.Stderr, "interrupted") || twice && strings.Contains(r.Stderr, "stopped at once")):
					interrupted++
					if strings.Contains(r.Stderr, "context canceled") || strings.Contains(r.Stderr, ".tmp-") {
						t.Errorf("%s: %q", what, r.Stderr)
					}
				default:
					t.Errorf("%s: %v", what, r)
				}
				if d := hostile.Diff(want, hostile.Listing(t, out)); d != "" {
					t.Errorf("%s: the output changed:\n%s", what, d)
				}
				checkNoTemporaries(t, what, dir)
			}
			t.Logf("%d of 6 runs interrupted", interrupted)
		})
	}
}

// TestHostileDiskFull writes into a tiny tmpfs (in a private mount
// namespace, gone when the run ends): the run fails with one line naming
// the output, the previous output stays, no temporary is left.
func TestHostileDiskFull(t *testing.T) {
	skipHostileInShort(t)
	unshare := testutil.Tool(t, "unshare", "util-linux")
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	s := hostile.NewSystem(t, 2<<20)
	script := `mount -t tmpfs -o size=1m nbimg-full "$1" || exit 99
mkdir "$1/out" && echo previous > "$1/out/old" && echo previous > "$1/out.sqfs" || exit 98
shift
"$@"
echo "rc=$?"
ls -A "$MNT"
cat "$MNT/out/old" "$MNT/out.sqfs"`
	for _, c := range hostileCommands(t) {
		if c.name == "closure" {
			continue // a closureInfo of a few paths fits in any disk
		}
		mnt := hostile.Dir(t)
		out := filepath.Join(mnt, "out")
		if strings.HasPrefix(c.name, "squashfs") || c.name == "initrd" {
			out = filepath.Join(mnt, "out.sqfs")
		}
		args := append([]string{"-m", "sh", "-c", script, "sh", mnt, hostile.Binary(t)}, c.args(s, out)...)
		cmd := exec.Command(unshare, args...)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1", "MNT="+mnt)
		r := hostile.Run(t, cmd)
		if !strings.Contains(r.Stdout, "rc=1\n") {
			t.Errorf("%s: %v, stdout %q", c.name, r, r.Stdout)
			continue
		}
		hostile.CheckFailure(t, c.name, hostile.Result{Code: 1, Stderr: r.Stderr}, 1, "no space left")
		if line := hostile.ErrorLines(r.Stderr); len(line) == 1 && !strings.Contains(line[0], out) {
			t.Errorf("%s: %q does not name the output %s", c.name, line[0], out)
		}
		if want := "rc=1\nout\nout.sqfs\nprevious\nprevious\n"; r.Stdout != want {
			t.Errorf("%s: left %q, want %q", c.name, r.Stdout, want)
		}
	}
}

// TestHostileTargets gives a FIFO, a device node, a symlink and a socket
// as -o: each is refused with exit 1 and left as it was, and so is what a
// symlink points to.
func TestHostileTargets(t *testing.T) {
	skipHostileInShort(t)
	s := hostile.NewSystem(t, 4096)
	dir := hostile.Dir(t)
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	targets := map[string]func(p string) error{
		"fifo":    func(p string) error { return syscall.Mkfifo(p, 0o644) },
		"symlink": func(p string) error { return os.Symlink(victim, p) },
		"dirlink": func(p string) error { return os.Symlink(dir, p) },
	}
	if os.Geteuid() == 0 {
		// A null-like device (1,3) in the temporary directory, never /dev.
		targets["device"] = func(p string) error { return syscall.Mknod(p, syscall.S_IFCHR|0o666, 1<<8|3) }
	}
	for name, mk := range targets {
		if err := mk(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	before := hostile.Listing(t, dir)
	for _, c := range hostileCommands(t) {
		for name := range targets {
			r := hostile.Run(t, nbimgCmd(t, c.args(s, filepath.Join(dir, name))...))
			hostile.CheckFailure(t, c.name+" -o "+name, r, exitFailure, name)
		}
	}
	if d := hostile.Diff(before, hostile.Listing(t, dir)); d != "" {
		t.Errorf("targets changed:\n%s", d)
	}
}

// asNobody runs cmd as uid and gid 65534 with no groups.
func asNobody(t *testing.T, cmd *exec.Cmd) *exec.Cmd {
	setpriv := testutil.Tool(t, "setpriv", "util-linux")
	if os.Geteuid() != 0 {
		t.Skip("changing user needs root")
	}
	cmd.Args = append([]string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"}, cmd.Args...)
	cmd.Path = setpriv
	return cmd
}

// TestHostileNonRoot runs as another user: a second run into the same -o
// (pi-netimage writes read-only store directories), an interrupted run,
// an existing read-only output tree, a read-only parent directory.
func TestHostileNonRoot(t *testing.T) {
	skipHostileInShort(t)
	if os.Geteuid() != 0 {
		t.Skip("changing user needs root")
	}
	s := hostile.NewSystem(t, 1<<20)
	base := hostile.Dir(t)
	if err := os.Chown(base, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	for _, c := range hostileCommands(t) {
		out := filepath.Join(base, c.name)
		for run := 1; run <= 2; run++ {
			if r := hostile.Run(t, asNobody(t, nbimgCmd(t, c.args(s, out)...))); r.Code != 0 {
				t.Errorf("%s run %d: %v", c.name, run, r)
			}
		}
		cmd := asNobody(t, nbimgCmd(t, c.args(s, out)...))
		wait, done := hostile.StartDone(t, cmd)
		hostile.WaitTemporary(base, done)
		time.Sleep(20 * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if r := wait(); r.Code != 0 && r.Code != exitSignal {
			t.Errorf("%s interrupted: %v", c.name, r)
		}
	}
	checkNoTemporaries(t, "non-root runs", base)

	// An existing output tree that is read-only throughout.
	ro := filepath.Join(base, "readonly")
	if err := os.MkdirAll(filepath.Join(ro, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(ro, "sub"), ro} {
		if err := os.WriteFile(filepath.Join(p, "f"), []byte("x"), 0o444); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(p, "f"), 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o555); err != nil {
			t.Fatal(err)
		}
	}
	args := append([]string{"netboot", "-o", ro, "--comp", hostileComp}, s.StoreArgs()...)
	if r := hostile.Run(t, asNobody(t, nbimgCmd(t, args...))); r.Code != 0 {
		t.Errorf("netboot over a read-only tree: %v", r)
	}
	checkNoTemporaries(t, "read-only tree", base)

	// A parent directory the user may not write: refused, previous kept.
	locked := filepath.Join(base, "locked")
	if err := os.MkdirAll(filepath.Join(locked, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(locked, "out", "old"), []byte("previous"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := hostile.Listing(t, locked)
	args = append([]string{"netboot", "-o", filepath.Join(locked, "out"), "--comp", hostileComp}, s.StoreArgs()...)
	r := hostile.Run(t, asNobody(t, nbimgCmd(t, args...)))
	hostile.CheckFailure(t, "netboot into a locked directory", r, exitFailure, "permission denied")
	if d := hostile.Diff(before, hostile.Listing(t, locked)); d != "" {
		t.Errorf("locked directory changed:\n%s", d)
	}
}

// TestHostileUmask077 checks that served outputs do not follow a umask
// of 077: files 0644 (0755 executable), directories 0755, also inside
// kexec.tar.gz.
func TestHostileUmask077(t *testing.T) {
	skipHostileInShort(t)
	s := hostile.NewSystem(t, 4096)
	dir := hostile.Dir(t)
	for _, c := range hostileCommands(t) {
		out := filepath.Join(dir, c.name)
		cmd := nbimgCmd(t, c.args(s, out)...)
		cmd.Args = append([]string{"sh", "-c", `umask 077 && exec "$@"`, "sh"}, cmd.Args...)
		cmd.Path = "/bin/sh"
		if r := hostile.Run(t, cmd); r.Code != 0 {
			t.Fatalf("%s: %v", c.name, r)
		}
		for rel, desc := range hostile.Listing(t, out) {
			if c.name == "pi-netimage" && strings.HasPrefix(rel, "os/") {
				continue // the NFS root keeps the store's modes on purpose
			}
			mode := strings.Fields(desc)[0]
			switch mode {
			case "drwxr-xr-x", "-rw-r--r--", "-rwxr-xr-x", "Lrwxrwxrwx":
			default:
				t.Errorf("%s: %s has mode %s under umask 077", c.name, rel, mode)
			}
		}
		if c.name == "kexec-tree" {
			tar := testutil.Tool(t, "tar", "tar")
			list, err := exec.Command(tar, "-tvzf", filepath.Join(out, "kexec.tar.gz")).Output()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(strings.TrimSpace(string(list)), "\n") {
				if m := strings.Fields(l)[0]; m != "drwxr-xr-x" && m != "-rw-r--r--" && m != "-rwxr-xr-x" {
					t.Errorf("kexec.tar.gz: %q", l)
				}
			}
		}
	}
}

// TestHostileOddPaths writes to paths with a comma, a blank, a newline,
// bytes that are not UTF-8 and a 255-byte name.
func TestHostileOddPaths(t *testing.T) {
	skipHostileInShort(t)
	s := hostile.NewSystem(t, 4096)
	dir := hostile.Dir(t)
	names := []string{"a,b", "a b", "a\nb", "caf\xe9", strings.Repeat("n", 255), "-o", "a#b"}
	for _, c := range hostileCommands(t) {
		if c.name == "pi-netimage" || c.name == "closure" {
			continue
		}
		for _, n := range names {
			out := filepath.Join(dir, c.name+"-"+strings.ReplaceAll(n, "\n", "_"))
			if len(n) == 255 {
				out = filepath.Join(dir, n)
			}
			if strings.Contains(n, "\n") {
				out = filepath.Join(dir, c.name+n)
			}
			r := hostile.Run(t, nbimgCmd(t, c.args(s, out)...))
			if c.name == "pxe" && strings.Contains(n, "\n") {
				// dnsmasq.conf cannot name a directory with a newline.
				hostile.CheckFailure(t, c.name+" "+n, r, exitFailure, "line break")
				continue
			}
			if r.Code != 0 {
				t.Errorf("%s -o %q: %v", c.name, out, r)
			} else if _, err := os.Lstat(out); err != nil {
				t.Errorf("%s -o %q: %v", c.name, out, err)
			}
			if c.name == "pxe" && r.Code == 0 {
				check.Dnsmasq(t, filepath.Join(out, "dnsmasq.conf"))
			}
			if len(n) == 255 {
				if err := os.RemoveAll(out); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	checkNoTemporaries(t, "odd paths", dir)
}

// TestHostileFlags gives absurd flag values: each is a usage error (exit
// 2, one line naming the flag) before anything is written.
func TestHostileFlags(t *testing.T) {
	skipHostileInShort(t)
	s := hostile.NewSystem(t, 4096)
	dir := hostile.Dir(t)
	out := filepath.Join(dir, "out")
	nb := func(extra ...string) []string {
		return append(append([]string{"netboot", "-o", out}, extra...), s.StoreArgs()...)
	}
	sq := func(extra ...string) []string {
		return append(append([]string{"squashfs", "-o", out}, extra...), s.StoreRoot)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nb("--processors", "99999999999"), "processors"},
		{nb("--processors", "0"), "processors"},
		{nb("--processors", "-3"), "processors"},
		{sq("--processors", "1025"), "processors"},
		{[]string{"closure", "-o", out, "--processors", "0", s.Toplevel}, "processors"},
		{[]string{"initrd", "-o", out, "--processors", "0", "--toplevel", s.Toplevel, "--store-root", s.StoreRoot}, "processors"},
		{nb("--comp", "xz -Xdict-size 50%"), "comp"},
		{sq("--comp", "xz -Xdict-size 50%"), "comp"},
		{sq("--comp", "lz4"), "comp"},
		{nb("--comp", "zstd -Xcompression-level 99"), "comp"},
		{nb("--mkfs-time", "-1"), "mkfs-time"},
		{nb("--mkfs-time", "99999999999999999999"), "mkfs-time"},
		{sq("--block-size", "3K"), "block-size"},
		{sq("--root-mode", "99999"), "root-mode"},
		{nb("--cmdline", "a\nb"), "cmdline"},
		{[]string{"pxe", "-o", out, "--title", "a\nb", "--toplevel", s.Toplevel}, "title"},
		{[]string{"pxe", "-o", out, "--menu-timeout", "0", "--toplevel", s.Toplevel}, "menu-timeout"},
		{[]string{"pxe", "-o", out, "--loglevel", "9", "--toplevel", s.Toplevel}, "loglevel"},
		{nb("--compress", "lzma"), "compress"},
		{[]string{"no-such-command"}, "no-such-command"},
		{nb("--no-such-flag"), "no-such-flag"},
	} {
		r := hostile.Run(t, nbimgCmd(t, tc.args...))
		hostile.CheckFailure(t, strings.Join(tc.args, " "), r, exitUsage, tc.want)
		if r.Stdout != "" {
			t.Errorf("%q: stdout %q", tc.args, r.Stdout)
		}
		if _, err := os.Lstat(out); err == nil {
			t.Fatalf("%q wrote %s", tc.args, out)
		}
	}
	checkNoTemporaries(t, "flags", dir)
	// --comp "" is the default everywhere.
	for _, args := range [][]string{nb("--comp", ""), sq("--comp", "")} {
		if r := hostile.Run(t, nbimgCmd(t, args...)); r.Code != 0 {
			t.Errorf("%q: %v", args, r)
		}
		if err := os.RemoveAll(out); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHostileInputs gives inputs that are almost certainly mistakes.
func TestHostileInputs(t *testing.T) {
	skipHostileInShort(t)
	s := hostile.NewSystem(t, 4096)
	dir := hostile.Dir(t)
	empty := filepath.Join(dir, "empty")
	text := filepath.Join(dir, "text")
	for p, data := range map[string]string{empty: "", text: "this is not a kernel\n"} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "out")
	run := func(extra ...string) hostile.Result {
		args := append(append([]string{"netboot", "-o", out, "--comp", hostileComp}, extra...), s.StoreArgs()...)
		return hostile.Run(t, nbimgCmd(t, args...))
	}
	hostile.CheckFailure(t, "empty kernel", run("--kernel", empty), exitFailure, "empty")
	if r := run("--kernel", text); r.Code != 0 || !strings.Contains(r.Stderr, "warning: kernel "+text) {
		t.Errorf("text kernel: %v", r)
	}
	r := hostile.Run(t, nbimgCmd(t, "initrd", "-o", filepath.Join(dir, "initrd"), "--squashfs", text))
	hostile.CheckFailure(t, "text --squashfs", r, exitFailure, "not a SquashFS")
	r = hostile.Run(t, nbimgCmd(t, append([]string{"squashfs", "-o", filepath.Join(dir, "img"), "--closure", empty}, "--store-root", s.StoreRoot)...))
	hostile.CheckFailure(t, "empty registration", r, exitFailure, "no store paths")

	// An image written into its own input directory is not packed into
	// the next one, nor are leftovers of an earlier write.
	in := filepath.Join(dir, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(in, "img.sqfs")
	if err := os.WriteFile(filepath.Join(in, ".img.sqfs.tmp-123"), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if r := hostile.Run(t, nbimgCmd(t, "squashfs", "-o", img, in)); r.Code != 0 {
			t.Fatalf("squashfs: %v", r)
		}
	}
	unsquashfs := testutil.Tool(t, "unsquashfs", "squashfs-tools")
	list, err := exec.Command(unsquashfs, "-l", "-d", "", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(list)); strings.Join(got, " ") != "/a" && !strings.HasSuffix(strings.Join(got, " "), "/a") || strings.Contains(string(list), "img.sqfs") {
		t.Errorf("image of its own directory lists:\n%s", list)
	}
}

// skipHostileInShort skips the group in -short runs (the race run): it
// runs the built binary many times, which the full run does once.
func skipHostileInShort(t *testing.T) {
	if testing.Short() {
		t.Skip("hostile group: runs the built binary; not in -short")
	}
}
