package initrd

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"sort"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/nbimg/nbimg/internal/testutil"
)

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"/nix-store.squashfs": "nix-store.squashfs",
		"nix-store.squashfs":  "nix-store.squashfs",
		"./a/b":               "a/b",
		"//a///b/":            "a/b",
		"/a/./b":              "a/b",
		"a/b/c.d":             "a/b/c.d",
	} {
		got, err := CleanName(in)
		if err != nil || got != want {
			t.Errorf("CleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "/", ".", "./", "../a", "a/../b", "a/..", "a\x00b", "/" + strings.Repeat("x", MaxNameLen+1)} {
		if _, err := CleanName(in); !errors.Is(err, ErrBadName) {
			t.Errorf("CleanName(%q): err = %v, want ErrBadName", in, err)
		}
	}
	if _, err := CleanName(strings.Repeat("x", MaxNameLen)); err != nil {
		t.Errorf("name of MaxNameLen bytes: %v", err)
	}
}

func TestArchiveLayout(t *testing.T) {
	a, err := NewArchive(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.AddBytes("/usr/bin/tool", 0o755, []byte("#!/bin/sh\necho hi\n")))
	must(a.AddBytes("init", 0o700|fs.ModeSetuid, []byte("x")))
	must(a.AddSymlink("/bin", "usr/bin"))
	must(a.AddDir("/usr", 0o711)) // explicit mode wins over the implicit parent
	must(a.AddBytes("usr-b", 0o644, nil))
	must(a.AddBytes("usr/a b", 0o600, []byte("12345")))

	b := mustArchive(t, a)
	if len(b)%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", len(b))
	}
	recs, end := readArchive(t, b)
	if end != len(b) {
		t.Errorf("trailer ends at %d, archive is %d bytes", end, len(b))
	}
	type want struct {
		name string
		mode cpio.FileMode
		data string
		link string
	}
	wants := []want{
		{"bin", cpio.TypeSymlink | 0o777, "", "usr/bin"},
		{"init", cpio.TypeReg | cpio.ModeSetuid | 0o700, "x", ""},
		{"usr", cpio.TypeDir | 0o711, "", ""},
		{"usr-b", cpio.TypeReg | 0o644, "", ""},
		{"usr/a b", cpio.TypeReg | 0o600, "12345", ""},
		{"usr/bin", cpio.TypeDir | 0o755, "", ""},
		{"usr/bin/tool", cpio.TypeReg | 0o755, "#!/bin/sh\necho hi\n", ""},
	}
	if len(recs) != len(wants) {
		t.Fatalf("got %d records, want %d", len(recs), len(wants))
	}
	for i, w := range wants {
		h := recs[i].hdr
		if h.Name != w.name || h.Mode != w.mode || string(recs[i].data) != w.data || h.Linkname != w.link {
			t.Errorf("record %d: %q mode %o data %q link %q; want %+v", i, h.Name, h.Mode, recs[i].data, h.Linkname, w)
		}
		if h.Uid != 0 || h.Guid != 0 || h.ModTime.Unix() != DefaultMTime || h.Inode != int64(i+1) {
			t.Errorf("%s: uid %d gid %d mtime %d inode %d", h.Name, h.Uid, h.Guid, h.ModTime.Unix(), h.Inode)
		}
		wantLinks := 1
		if h.Mode&cpio.ModeType == cpio.TypeDir {
			wantLinks = 2
		}
		if h.Links != wantLinks {
			t.Errorf("%s: nlink %d, want %d", h.Name, h.Links, wantLinks)
		}
	}
	if got := a.Names(); !sort.StringsAreSorted(got) || len(got) != len(wants) {
		t.Errorf("Names() = %q", got)
	}
}

func TestArchiveErrors(t *testing.T) {
	a, err := NewArchive(time.Unix(5, 0))
	testutil.NoError(t, err)
	if err := a.AddBytes("a/b", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.AddBytes("a/b", 0o644, nil); !errors.Is(err, ErrDuplicate) {
		t.Errorf("duplicate file: %v", err)
	}
	if err := a.AddBytes("a", 0o644, nil); !errors.Is(err, ErrDuplicate) {
		t.Errorf("file over implicit dir: %v", err)
	}
	if err := a.AddBytes("a/b/c", 0o644, nil); !errors.Is(err, ErrDuplicate) {
		t.Errorf("file under a file: %v", err)
	}
	if err := a.AddDir("a", 0o700); err != nil {
		t.Errorf("explicit dir over implicit one: %v", err)
	}
	if err := a.AddDir("a", 0o700); !errors.Is(err, ErrDuplicate) {
		t.Errorf("dir added twice: %v", err)
	}
	err = a.AddFile("big", 0o644, MaxFileSize+1, nil)
	if !errors.Is(err, ErrFileTooLarge) || !strings.Contains(err.Error(), "big") {
		t.Errorf("4 GiB file: %v", err)
	}
	if err := a.AddFile("max", 0o644, MaxFileSize, nil); err != nil {
		t.Errorf("file of MaxFileSize bytes: %v", err)
	}
	if err := a.AddSymlink("l", ""); !errors.Is(err, ErrBadName) {
		t.Errorf("empty link target: %v", err)
	}
	for _, mt := range []time.Time{time.Unix(-1, 0), time.Unix(1<<32, 0)} {
		if _, err := NewArchive(mt); !errors.Is(err, ErrBadMTime) {
			t.Errorf("NewArchive(%d): %v", mt.Unix(), err)
		}
	}
	if _, err := NewArchive(time.Unix(0, 0)); err != nil {
		t.Errorf("mtime 0: %v", err)
	}
}

func TestArchiveSizeChanged(t *testing.T) {
	for _, data := range []string{"abc", "abcdef"} {
		a, err := NewArchive(time.Time{})
		testutil.NoError(t, err)
		r := strings.NewReader(data)
		if err := a.AddFile("f", 0o644, 4, func() (io.ReadCloser, error) { return io.NopCloser(r), nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := a.WriteTo(io.Discard); !errors.Is(err, ErrSizeChanged) {
			t.Errorf("%d bytes for a 4-byte entry: err = %v", len(data), err)
		}
	}
}

func TestArchiveAddFS(t *testing.T) {
	fsys := fstest.MapFS{
		"bin/busybox": {Data: []byte("elf"), Mode: 0o755},
		"bin/sh":      {Data: []byte("busybox"), Mode: fs.ModeSymlink | 0o777},
		"etc":         {Mode: fs.ModeDir | 0o750},
		"init":        {Data: []byte("#!/bin/sh\n"), Mode: 0o755},
	}
	a, err := NewArchive(time.Time{})
	testutil.NoError(t, err)
	if err := a.AddFS(fsys, "/root"); err != nil {
		t.Fatal(err)
	}
	recs, _ := readArchive(t, mustArchive(t, a))
	var got []string
	for _, r := range recs {
		got = append(got, r.hdr.Name+" "+r.hdr.Mode.String()+" "+string(r.data)+r.hdr.Linkname)
	}
	want := []string{
		"root 040555 ", // the root of fsys; MapFS makes synthesized directories 0555
		"root/bin 040555 ",
		"root/bin/busybox 0100755 elf",
		"root/bin/sh 0120777 busybox",
		"root/etc 040750 ",
		"root/init 0100755 #!/bin/sh\n",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	bad := fstest.MapFS{"p": {Mode: fs.ModeNamedPipe}}
	b, err := NewArchive(time.Time{})
	testutil.NoError(t, err)
	if err := b.AddFS(bad, ""); !errors.Is(err, ErrUnsupported) {
		t.Errorf("FIFO: %v", err)
	}
}

// TestArchiveReproducible changes one input at a time and sees the bytes
// change, and rebuilds the same input and sees them stay.
func TestArchiveReproducible(t *testing.T) {
	type input struct {
		mtime int64
		name  string
		perm  fs.FileMode
		data  string
		order bool
	}
	build := func(in input) [32]byte {
		a, err := NewArchive(time.Unix(in.mtime, 0))
		if err != nil {
			t.Fatal(err)
		}
		add := []func(){
			func() { testutil.NoError(t, a.AddBytes(in.name, in.perm, []byte(in.data))) },
			func() { testutil.NoError(t, a.AddBytes("z/other", 0o644, []byte("o"))) },
			func() { testutil.NoError(t, a.AddSymlink("l", "z/other")) },
		}
		if in.order {
			for i := len(add) - 1; i >= 0; i-- {
				add[i]()
			}
		} else {
			for _, f := range add {
				f()
			}
		}
		return sha256.Sum256(mustArchive(t, a))
	}
	base := input{1, "a/f", 0o644, "data", false}
	ref := build(base)
	if build(base) != ref {
		t.Fatal("same input gave different bytes")
	}
	same := base
	same.order = true
	if build(same) != ref {
		t.Error("adding entries in another order changed the bytes")
	}
	for what, in := range map[string]input{
		"mtime": {2, "a/f", 0o644, "data", false},
		"name":  {1, "a/g", 0o644, "data", false},
		"perm":  {1, "a/f", 0o600, "data", false},
		"data":  {1, "a/f", 0o644, "datb", false},
	} {
		if build(in) == ref {
			t.Errorf("changing the %s did not change the bytes", what)
		}
	}
}

func TestArchiveEmpty(t *testing.T) {
	a, err := NewArchive(time.Time{})
	testutil.NoError(t, err)
	b := mustArchive(t, a)
	recs, end := readArchive(t, b)
	if len(recs) != 0 || end != len(b) || !bytes.HasPrefix(b, []byte("070701")) {
		t.Errorf("empty archive: %d records, %q", len(recs), b)
	}
}
