package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/nixstore"
	"github.com/nbimg/nbimg/nixstore/nixstoretest"
	"github.com/urfave/cli/v2"
)

// checkClosureInfo compares the closureInfo directory nbimg wrote in dir
// with the one Nix built in want, file by file.
func checkClosureInfo(t *testing.T, dir, want string) {
	t.Helper()
	for _, name := range []string{"store-paths", "registration", "total-nar-size"} {
		got, want := testutil.ReadFile(t, filepath.Join(dir, name)), testutil.ReadFile(t, filepath.Join(want, name))
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from Nix's closureInfo:\n--- got\n%s\n--- want\n%s", name, got, want)
		}
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("output directory: %v %v", st.Mode(), err)
	}
	left, err := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	testutil.NoError(t, err)
	left2, err := filepath.Glob(filepath.Join(filepath.Dir(dir), ".*tmp*"))
	testutil.NoError(t, err)
	if len(left)+len(left2) > 0 {
		t.Errorf("temporary files left: %q %q", left, left2)
	}
}

// TestClosureCommandMatchesNix checks `nbimg closure` against the closureInfo
// Nix makes of the same system (see nixstore/testdata/store.nix and
// internal/check/closureinfo.nix).
func TestClosureCommandMatchesNix(t *testing.T) {
	s := nixstoretest.NixStore(t)
	tmp := t.TempDir()
	result := filepath.Join(tmp, "result")
	if err := os.Symlink(s.Top, result); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "closure-info")
	code, stdout, stderr := runApp(t, "closure", "-o", out, result)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stdout != "" || !strings.Contains(stderr, "closure-info: 10 paths") {
		t.Errorf("stdout %q, stderr %q", stdout, stderr)
	}
	checkClosureInfo(t, out, s.ClosureInfo)

	// Again into the existing directory, one path at a time, quietly.
	testutil.NoError(t, os.WriteFile(filepath.Join(out, "registration"), []byte("stale"), 0o644))
	code, _, stderr = runApp(t, "--quiet", "closure", "--processors", "1", "-o", out, s.Top)
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d: %q", code, stderr)
	}
	checkClosureInfo(t, out, s.ClosureInfo)

	// The closure of several roots is their union, as Nix makes it.
	out2 := filepath.Join(tmp, "two")
	if code, _, stderr := runApp(t, "closure", "-o", out2, s.Top, s.Unrelated); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	checkClosureInfo(t, out2, check.ClosureInfo(t, s.Top, s.Unrelated))
	if sp := testutil.ReadFile(t, filepath.Join(out2, "store-paths")); !bytes.Contains(sp, []byte(s.Unrelated+"\n")) {
		t.Errorf("store-paths of two roots lack %s:\n%s", s.Unrelated, sp)
	}
}

func TestClosureCommandErrors(t *testing.T) {
	tmp := t.TempDir()
	notStore := filepath.Join(tmp, "file")
	testutil.NoError(t, os.WriteFile(notStore, []byte("x"), 0o644))
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"closure", "-o", filepath.Join(tmp, "o")}, exitUsage, "at least one ROOT"},
		{[]string{"closure", "/nix/store/x"}, exitUsage, "output"},
		{[]string{"closure", "--processors", "0", "-o", filepath.Join(tmp, "o"), "/x"}, exitUsage, "--processors"},
		{[]string{"closure", "-o", filepath.Join(tmp, "o"), notStore}, exitFailure, "not a store path"},
		{[]string{"closure", "-o", filepath.Join(tmp, "o"), filepath.Join(tmp, "missing")}, exitFailure, "no such file"},
		{[]string{"closure", "--store-root", tmp, "-o", filepath.Join(tmp, "o"), "/nix/store/00000000000000000000000000000000-x"}, exitFailure, "no such file"},
	} {
		code, _, stderr := runApp(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) || strings.Count(stderr, "nbimg:") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "o")); err == nil {
		t.Errorf("a failed run left output behind")
	}
}

func TestClosureInputFlags(t *testing.T) {
	var got nixstore.Input
	app := &cli.App{
		Flags:  closureInputFlags(),
		Action: func(c *cli.Context) error { got = closureInputFromFlags(c); return nil },
	}
	err := app.Run([]string{"x", "--closure", "ci", "--toplevel", "result", "--store-root", "/mnt"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (nixstore.Input{Closure: "ci", Toplevel: "result", StoreRoot: "/mnt"}); got != want {
		t.Fatalf("input %+v, want %+v", got, want)
	}
}

// TestClosureCommandFixture is issue 2's acceptance test: on the fixture
// system, `nbimg closure` writes the closureInfo Nix made, byte for byte.
func TestClosureCommandFixture(t *testing.T) {
	f := testutil.LoadFixture(t)
	out := filepath.Join(t.TempDir(), "closure-info")
	code, _, stderr := runApp(t, "closure", "-o", out, filepath.Join(f.Dir, "toplevel"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	checkClosureInfo(t, out, f.ClosureDir)
}

// TestClosureCommandStoreRoot runs without Nix on a store under a root.
func TestClosureCommandStoreRoot(t *testing.T) {
	root := t.TempDir()
	a := "/nix/store/0a2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-a"
	b := "/nix/store/1b2y6ifm2mn8fv0vi3r7n5vqkl7iqsl2-b"
	testutil.NoError(t, os.MkdirAll(filepath.Join(root, a), 0o755))
	testutil.NoError(t, os.WriteFile(filepath.Join(root, a, "ref"), []byte(b+"\n"), 0o644))
	testutil.NoError(t, os.WriteFile(filepath.Join(root, b), []byte("b\n"), 0o644))
	out := filepath.Join(t.TempDir(), "ci")
	code, _, stderr := runApp(t, "--verbose", "closure", "--store-root", root, "-o", out, a)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	sp := testutil.ReadFile(t, filepath.Join(out, "store-paths"))
	if string(sp) != a+"\n"+b+"\n" || !strings.Contains(stderr, "root "+a) {
		t.Errorf("store-paths %q, stderr %q", sp, stderr)
	}
	reg := testutil.ReadFile(t, filepath.Join(out, "registration"))
	paths, err := nixstore.ParseRegistration(bytes.NewReader(reg), "registration")
	if err != nil || len(paths) != 2 || strings.Join(paths[0].References, " ") != b {
		t.Errorf("registration %q: %v", reg, err)
	}
}
