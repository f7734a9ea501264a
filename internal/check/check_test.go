package check_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/nixstore/nixstoretest"
)

// recorder stands in for a test to see whether a checker fails it. The
// tests look their tools up first, so that a missing tool skips (or fails)
// the real test rather than counting as a checker's failure.
type recorder struct {
	testing.TB
	failed []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// fails reports whether the checker fails a test.
func fails(t *testing.T, checker func(testing.TB)) bool {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		checker(r)
	}()
	<-done
	return len(r.failed) > 0
}

func TestShellcheckHasTeeth(t *testing.T) {
	testutil.Tool(t, "shellcheck", "shellcheck")
	if fails(t, func(tb testing.TB) { check.Shellcheck(tb, "good", []byte("#!/bin/sh\necho \"$1\"\n"), "sh") }) {
		t.Error("shellcheck rejects a clean script")
	}
	if !fails(t, func(tb testing.TB) { check.Shellcheck(tb, "bad", []byte("#!/bin/sh\necho $1\n"), "sh") }) {
		t.Error("shellcheck accepts an unquoted expansion")
	}
}

func TestArchiveCheckers(t *testing.T) {
	dir := t.TempDir()
	testutil.NoError(t, os.WriteFile(filepath.Join(dir, "f"), []byte("data"), 0o644))
	cpio := testutil.Tool(t, "cpio", "cpio")
	testutil.Tool(t, "bsdtar", "libarchive-tools")
	archive := check.Run(t, dir, []byte("f\n"), cpio, "--quiet", "-o", "-H", "newc")
	if got := check.CpioList(t, archive, false); !slices.Equal(got, []string{"f"}) {
		t.Errorf("cpio -t: %q", got)
	}
	if got := check.BsdtarList(t, archive); !slices.Equal(got, []string{"f"}) {
		t.Errorf("bsdtar -t: %q", got)
	}
	for name, extract := range map[string]func(testing.TB, []byte, string){"cpio": check.CpioExtract, "bsdtar": check.BsdtarExtract} {
		x := t.TempDir()
		extract(t, archive, x)
		if got := testutil.ReadFile(t, filepath.Join(x, "f")); string(got) != "data" {
			t.Errorf("%s extracted %q", name, got)
		}
	}
	// A cut archive is an error, not an empty listing.
	for name, list := range map[string]func(testing.TB){
		"cpio":   func(tb testing.TB) { check.CpioList(tb, archive[:100], false) },
		"bsdtar": func(tb testing.TB) { check.BsdtarList(tb, archive[:100]) },
	} {
		if !fails(t, list) {
			t.Errorf("%s lists a truncated archive without failing", name)
		}
	}
}

func TestSquashfsCheckers(t *testing.T) {
	testutil.Tool(t, "mksquashfs", "squashfs-tools")
	testutil.Tool(t, "unsquashfs", "squashfs-tools")
	testutil.Tool(t, "sqfsdiff", "squashfs-tools-ng")
	src := t.TempDir()
	testutil.NoError(t, os.MkdirAll(filepath.Join(src, "d"), 0o755))
	testutil.NoError(t, os.WriteFile(filepath.Join(src, "d", "f"), []byte("one"), 0o644))
	env := check.EnvWith("SOURCE_DATE_EPOCH", "1")
	a := check.Mksquashfs(t, env, []string{src}, "-all-root")
	b := check.Mksquashfs(t, env, []string{src}, "-all-root")
	check.Sqfsdiff(t, a, b)
	if got := check.UnsquashfsList(t, a); !slices.Equal(got, []string{"d", "d/f"}) {
		t.Errorf("unsquashfs -l: %q", got)
	}
	if got := testutil.ReadFile(t, filepath.Join(check.UnsquashfsExtract(t, a), "d", "f")); string(got) != "one" {
		t.Errorf("unsquashfs extracted %q", got)
	}
	testutil.NoError(t, os.WriteFile(filepath.Join(src, "d", "f"), []byte("two"), 0o644))
	c := check.Mksquashfs(t, env, []string{src}, "-all-root")
	if !fails(t, func(tb testing.TB) { check.Sqfsdiff(tb, a, c) }) {
		t.Error("sqfsdiff finds no difference between images of different files")
	}
}

func TestDnsmasqHasTeeth(t *testing.T) {
	testutil.Tool(t, "dnsmasq", "dnsmasq-base")
	good := filepath.Join(t.TempDir(), "good.conf")
	testutil.NoError(t, os.WriteFile(good, []byte("port=0\nenable-tftp\n"), 0o644))
	check.Dnsmasq(t, good)
	check.DnsmasqRejects(t, "no-such-option=1\n")
	bad := filepath.Join(t.TempDir(), "bad.conf")
	testutil.NoError(t, os.WriteFile(bad, []byte("dhcp-range=nonsense\n"), 0o644))
	if !fails(t, func(tb testing.TB) { check.Dnsmasq(tb, bad) }) {
		t.Error("Dnsmasq accepts a bad dhcp-range")
	}
}

// TestClosureInfoOracle checks the oracle against what nix-store itself
// says of the same closure: the set of paths (--query --requisites), each
// path's NAR hash and size and references.
func TestClosureInfoOracle(t *testing.T) {
	s := nixstoretest.NixStore(t)
	nixStore := testutil.Tool(t, "nix-store", "nix-bin")
	dir := check.ClosureInfo(t, s.Top)
	storePaths := strings.Fields(string(testutil.ReadFile(t, filepath.Join(dir, "store-paths"))))
	want := strings.Fields(string(check.Run(t, "", nil, nixStore, "--query", "--requisites", s.Top)))
	slices.Sort(want)
	if !slices.Equal(storePaths, want) {
		t.Fatalf("store-paths %q, nix-store -qR %q", storePaths, want)
	}
	var wantReg strings.Builder
	var total uint64
	for _, p := range storePaths {
		q := func(what string) []string {
			return strings.Fields(string(check.Run(t, "", nil, nixStore, "--query", what, p)))
		}
		hash, size := q("--hash"), q("--size")
		refs := q("--references")
		slices.Sort(refs)
		var n uint64
		if _, err := fmt.Sscan(size[0], &n); err != nil {
			t.Fatal(err)
		}
		total += n
		// nix-store --query --hash prints sha256:<nix32>, as closureInfo has it.
		fmt.Fprintf(&wantReg, "%s\n%s\n%s\n\n%d\n", p, hash[0], size[0], len(refs))
		for _, r := range refs {
			wantReg.WriteString(r + "\n")
		}
	}
	if got := string(testutil.ReadFile(t, filepath.Join(dir, "registration"))); got != wantReg.String() {
		t.Errorf("registration:\n%s\nwant, from nix-store --query:\n%s", got, wantReg.String())
	}
	if got := string(testutil.ReadFile(t, filepath.Join(dir, "total-nar-size"))); got != fmt.Sprint(total)+"\n" {
		t.Errorf("total-nar-size %q, want %d", got, total)
	}
	// nixstoretest builds the same expression with top as a derivation
	// (another store path, the same files).
	if got := testutil.ReadFile(t, filepath.Join(dir, "registration")); string(got) != string(s.Registration) {
		t.Errorf("registration differs from nixstoretest's")
	}
	// No roots: an empty closure.
	empty := check.ClosureInfo(t)
	if got := string(testutil.ReadFile(t, filepath.Join(empty, "total-nar-size"))); got != "0\n" {
		t.Errorf("empty closure: total-nar-size %q", got)
	}
}
