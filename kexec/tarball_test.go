package kexec

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/testutil"
)

// testTree writes a kexec tree with small files into a new directory.
func testTree(t *testing.T, kernel string) string {
	t.Helper()
	dir := t.TempDir()
	text, err := Script{Init: toplevel + "/init"}.Text()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{KernelName, []byte(kernel), 0o600},
		{InitrdName, bytes.Repeat([]byte("initrd "), 1000), 0o640},
		{ScriptName, text, 0o700},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func tarball(t *testing.T, dir string, mtime time.Time) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteTarball(context.Background(), &b, dir, mtime); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestTarballReproducible(t *testing.T) {
	mtime := time.Unix(1700000000, 0)
	a := tarball(t, testTree(t, "kernel"), mtime)
	b := tarball(t, testTree(t, "kernel"), mtime)
	if !bytes.Equal(a, b) {
		t.Error("two trees with the same content give different tarballs")
	}
	if bytes.Equal(a, tarball(t, testTree(t, "kernel2"), mtime)) {
		t.Error("a different kernel gives the same tarball")
	}
	if bytes.Equal(a, tarball(t, testTree(t, "kernel"), mtime.Add(time.Second))) {
		t.Error("a different mtime gives the same tarball")
	}
	// The gzip header carries neither a name nor a time.
	zr, err := gzip.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header name %q time %v", zr.Name, zr.ModTime)
	}
}

// TestTarballListing reads the tarball with GNU tar and bsdtar.
func TestTarballListing(t *testing.T) {
	dir := testTree(t, "kernel")
	data := tarball(t, dir, time.Unix(1700000000, 0))
	file := filepath.Join(t.TempDir(), TarballName)
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"drwxr-xr-x 0/0 0 2023-11-14 22:13 kexec/",
		"-rw-r--r-- 0/0 6 2023-11-14 22:13 kexec/bzImage",
		"-rw-r--r-- 0/0 7000 2023-11-14 22:13 kexec/initrd.gz",
		"-rwxr-xr-x 0/0 SIZE 2023-11-14 22:13 kexec/kexec-boot",
	}
	st, err := os.Stat(filepath.Join(dir, ScriptName))
	testutil.NoError(t, err)
	want[3] = strings.Replace(want[3], "SIZE", strconv.FormatInt(st.Size(), 10), 1)

	if got := normalize(strings.Join(check.TarList(t, file), "\n")); got != strings.Join(want, "\n") {
		t.Errorf("tar -tvzf:\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
	gnutar := testutil.Tool(t, "tar", "tar")
	if out := check.Run(t, "", nil, gnutar, "-tvzf", file); strings.Count(string(out), "root/root") != 4 {
		t.Errorf("tar -tvzf does not show root/root for each entry:\n%s", out)
	}

	if got := strings.Join(check.BsdtarList(t, data), "\n"); got != "kexec/\nkexec/bzImage\nkexec/initrd.gz\nkexec/kexec-boot" {
		t.Errorf("bsdtar -tf:\n%s", got)
	}
	// Extracted, the files are the tree's.
	x := t.TempDir()
	check.BsdtarExtract(t, data, x)
	for _, n := range TreeFiles {
		a := testutil.ReadFile(t, filepath.Join(dir, n))
		b, err := os.ReadFile(filepath.Join(x, TarballDir, n))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("extracted %s differs from the tree's (%v)", n, err)
		}
	}
}

// normalize squeezes the blanks of a tar listing.
func normalize(s string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "\n")
}

func TestTarballErrors(t *testing.T) {
	dir := testTree(t, "kernel")
	if err := os.Remove(filepath.Join(dir, InitrdName)); err != nil {
		t.Fatal(err)
	}
	err := WriteTarball(context.Background(), io.Discard, dir, time.Unix(1, 0))
	if err == nil || !strings.Contains(err.Error(), InitrdName) {
		t.Errorf("missing initrd: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WriteTarball(ctx, io.Discard, testTree(t, "k"), time.Unix(1, 0)); err == nil {
		t.Error("canceled context: no error")
	}
}

// TestTarballGoReader checks the headers field by field.
func TestTarballGoReader(t *testing.T) {
	data := tarball(t, testTree(t, "kernel"), time.Unix(5, 0))
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "root" || h.Gname != "root" || h.ModTime.Unix() != 5 {
			t.Errorf("%s: owner %d:%d (%s:%s), mtime %v", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
	}
	if strings.Join(names, " ") != "kexec/ kexec/bzImage kexec/initrd.gz kexec/kexec-boot" {
		t.Errorf("entries %v", names)
	}
}
