package nfsroot

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// fakeStore makes two store paths under a host directory: a directory
// with an executable, a plain file, a group-executable file, symlinks and
// an empty directory, and a single-file store path. Modes are deliberately
// not the store's, to see them normalised.
func fakeStore(t *testing.T) (host string, paths []StorePath) {
	t.Helper()
	host = t.TempDir()
	a := filepath.Join(host, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-tool")
	for _, d := range []string{"bin", "share/doc", "empty"} {
		if err := os.MkdirAll(filepath.Join(a, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, content string, mode fs.FileMode) {
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		testutil.NoError(t, os.Chmod(p, mode))
	}
	write(filepath.Join(a, "bin/tool"), "#!/bin/sh\necho tool\n", 0o700)
	write(filepath.Join(a, "bin/group-x"), "x", 0o610)
	write(filepath.Join(a, "share/doc/README"), "readme\n", 0o600)
	testutil.NoError(t, os.Symlink("tool", filepath.Join(a, "bin/alias")))
	testutil.NoError(t, os.Symlink("/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-data", filepath.Join(a, "share/data")))
	testutil.NoError(t, os.Symlink("dangling", filepath.Join(a, "share/dangling")))
	b := filepath.Join(host, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-data")
	write(b, "data\n", 0o644)
	return host, []StorePath{
		{Path: "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-data", Host: b},
		{Path: "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-tool", Host: a},
	}
}

// listing maps each entry to "MODE - MTIME UID CONTENT", CONTENT being a
// file's bytes or a symlink's target.
func listing(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		extra := ""
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if extra, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			b := testutil.ReadFile(t, p)
			extra = string(b)
		}
		out[rel] = strings.Join([]string{fi.Mode().String(), "-",
			strconv.FormatInt(st.Mtim.Sec, 10), strconv.FormatUint(uint64(st.Uid), 10), extra}, " ")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWriteRoot(t *testing.T) {
	_, paths := fakeStore(t)
	boot := t.TempDir()
	testutil.NoError(t, os.MkdirAll(filepath.Join(boot, "overlays"), 0o700))
	testutil.NoError(t, os.WriteFile(filepath.Join(boot, "config.txt"), []byte("arm_64bit=1\n"), 0o600))
	testutil.NoError(t, os.WriteFile(filepath.Join(boot, "overlays/x.dtbo"), []byte("dtbo"), 0o600))
	testutil.NoError(t, os.MkdirAll(filepath.Join(boot, "1a2b3c4d"), 0o755)) // a serial-number copy: not copied
	testutil.NoError(t, os.WriteFile(filepath.Join(boot, "1a2b3c4d/config.txt"), []byte("arm_64bit=1\n"), 0o600))
	dir := t.TempDir()
	var progress []int
	st, err := WriteRoot(context.Background(), dir, Root{
		Store:        paths,
		Registration: []byte("registration\n"),
		Init:         "/nix/store/cccccccccccccccccccccccccccccccc-nixos-system/init",
		BootDir:      boot,
		BootFiles:    []string{"config.txt", "overlays/x.dtbo"},
		Workers:      1,
		Progress:     func(done, total int) { progress = append(progress, done, total) },
	})
	if err != nil {
		t.Fatal(err)
	}
	l := listing(t, dir)
	uid := strconv.Itoa(os.Geteuid())
	if st.Owned {
		uid = "0"
	}
	if got := st.Owned; got != (os.Geteuid() == 0) {
		t.Errorf("Owned = %v as uid %d", got, os.Geteuid())
	}
	want := map[string]string{
		".":                             "drwxr-xr-x",
		"nix":                           "drwxr-xr-x",
		"nix/store":                     "drwxr-xr-x",
		"nix-path-registration":         "-r--r--r-- registration\n",
		"sbin":                          "drwxr-xr-x",
		"sbin/init":                     "Lrwxrwxrwx /nix/store/cccccccccccccccccccccccccccccccc-nixos-system/init",
		"boot":                          "drwxr-xr-x",
		"boot/firmware":                 "drwxr-xr-x",
		"boot/firmware/config.txt":      "-rw-r--r-- arm_64bit=1\n",
		"boot/firmware/overlays":        "drwxr-xr-x",
		"boot/firmware/overlays/x.dtbo": "-rw-r--r-- dtbo",
		"dev":                           "drwxr-xr-x",
		"etc":                           "drwxr-xr-x",
		"mnt":                           "drwxr-xr-x",
		"proc":                          "dr-xr-xr-x",
		"root":                          "drwx------",
		"run":                           "drwxr-xr-x",
		"sys":                           "dr-xr-xr-x",
		"tmp":                           "dtrwxrwxrwx",
		"var":                           "drwxr-xr-x",
		"nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-data":                  "-r--r--r-- data\n",
		"nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-tool":                  "dr-xr-xr-x",
		"nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-tool/bin":              "dr-xr-xr-x",
		"nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-tool/bin/tool":         "-r-xr-xr-x #!/bin/sh\necho tool\n",
		"nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-tool/bin/group-x":      "-r-xr-xr-x x",
		"nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-tool/bin/alias":        "Lrwxrwxrwx tool",
		"nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-tool/empty":            "dr-xr-xr-x",
		"nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-tool/share":            "dr-xr-xr-x",
		"nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-tool/share/doc":        "dr-xr-xr-x",
		"nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-tool/share/doc/README": "-r--r--r-- readme\n",
		"nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-tool/share/data":       "Lrwxrwxrwx /nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-data",
		"nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-tool/share/dangling":   "Lrwxrwxrwx dangling",
	}
	var names []string
	for n := range l {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		w, ok := want[n]
		if !ok {
			t.Errorf("unexpected entry %s: %s", n, l[n])
			continue
		}
		mode, rest, _ := strings.Cut(w, " ")
		f := strings.SplitN(l[n], " ", 5)
		if f[0] != mode || f[4] != rest {
			t.Errorf("%s: mode %s content %q, want %s %q", n, f[0], f[4], mode, rest)
		}
		if f[2] != "1" {
			t.Errorf("%s: mtime %s, want 1", n, f[2])
		}
		if strings.HasPrefix(n, "nix") && f[3] != uid {
			t.Errorf("%s: owner %s, want %s", n, f[3], uid)
		}
	}
	for n := range want {
		if _, ok := l[n]; !ok {
			t.Errorf("missing %s", n)
		}
	}
	if st.Files != 4 || st.Dirs != 5 || st.Symlinks != 3 || st.Bytes != int64(len("data\n#!/bin/sh\necho tool\nxreadme\n")) {
		t.Errorf("stats %+v", st)
	}
	if len(progress) != 4 || progress[2] != 2 || progress[3] != 2 {
		t.Errorf("progress calls %v", progress)
	}
}

// TestWriteRootCopies checks that the root holds copies: changing the
// source afterwards does not change the root.
func TestWriteRootCopies(t *testing.T) {
	_, paths := fakeStore(t)
	dir := t.TempDir()
	if _, err := WriteRoot(context.Background(), dir, Root{Store: paths, Init: "/nix/store/x-system/init"}); err != nil {
		t.Fatal(err)
	}
	src := paths[0].Host
	testutil.NoError(t, os.Chmod(src, 0o644))
	if err := os.WriteFile(src, []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "nix/store", filepath.Base(src)))
	if err != nil || string(b) != "data\n" {
		t.Errorf("copy reads %q, %v after the source changed", b, err)
	}
	var a, c syscall.Stat_t
	testutil.NoError(t, syscall.Stat(src, &a))
	testutil.NoError(t, syscall.Stat(filepath.Join(dir, "nix/store", filepath.Base(src)), &c))
	if a.Ino == c.Ino && a.Dev == c.Dev {
		t.Error("the copy is a hard link")
	}
}

func TestWriteRootErrors(t *testing.T) {
	host, paths := fakeStore(t)
	fifo := filepath.Join(host, "dddddddddddddddddddddddddddddddd-fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		r    Root
		want string
	}{
		"fifo":      {Root{Store: append(paths, StorePath{Path: "/nix/store/dddddddddddddddddddddddddddddddd-fifo", Host: fifo}), Init: "/i"}, "fifo"},
		"missing":   {Root{Store: []StorePath{{Path: "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-gone", Host: filepath.Join(host, "gone")}}, Init: "/i"}, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-gone"},
		"twice":     {Root{Store: append(paths, paths[0]), Init: "/i"}, "twice"},
		"not store": {Root{Store: []StorePath{{Path: "/usr/bin/x", Host: fifo}}, Init: "/i"}, "/usr/bin/x"},
		"no init":   {Root{Store: paths}, "init"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := WriteRoot(context.Background(), t.TempDir(), tc.r)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
			if name == "fifo" && !errors.Is(err, ErrFileType) {
				t.Errorf("err = %v, want ErrFileType", err)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := WriteRoot(ctx, t.TempDir(), Root{Store: paths, Init: "/i"}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: err = %v", err)
	}
}
