package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// UnsquashfsExtract extracts the squashfs image img with unsquashfs into a
// new directory and returns it.
func UnsquashfsExtract(t testing.TB, img string) string {
	t.Helper()
	bin := testutil.Tool(t, "unsquashfs", "squashfs-tools")
	dir := filepath.Join(t.TempDir(), "squashfs-root")
	Run(t, "", nil, bin, "-no-progress", "-d", dir, img)
	return dir
}

// UnsquashfsList returns the entries unsquashfs lists in img, relative to
// the image's root ("a", "a/b", ...; the root itself is left out).
func UnsquashfsList(t testing.TB, img string) []string {
	t.Helper()
	bin := testutil.Tool(t, "unsquashfs", "squashfs-tools")
	const root = "squashfs-root"
	var names []string
	for _, l := range lines(Run(t, "", nil, bin, "-no-progress", "-l", "-d", root, img)) {
		if rel, ok := strings.CutPrefix(l, root+"/"); ok {
			names = append(names, rel)
		}
	}
	return names
}

// Mksquashfs makes the reference image out of srcs with mksquashfs and the
// given options (-noappend, -no-xattrs, -quiet and -no-progress are
// added) and returns its path. env, when not nil, is mksquashfs's whole
// environment (SOURCE_DATE_EPOCH changes what it writes).
func Mksquashfs(t testing.TB, env []string, srcs []string, args ...string) string {
	t.Helper()
	bin := testutil.Tool(t, "mksquashfs", "squashfs-tools")
	ref := filepath.Join(t.TempDir(), "ref.sqfs")
	all := append(append(append([]string{}, srcs...), ref, "-noappend", "-no-xattrs", "-quiet", "-no-progress"), args...)
	if out, stderr, err := run("", nil, env, bin, all...); err != nil {
		t.Fatalf("mksquashfs %s: %v\n%s%s", strings.Join(all, " "), err, out, stderr)
	}
	return ref
}

// Sqfsdiff fails the test unless sqfsdiff (squashfs-tools-ng) finds the
// images a and b the same, comparing inode numbers and times too
// (sqfsdiff -I -T).
func Sqfsdiff(t testing.TB, a, b string) {
	t.Helper()
	bin := testutil.Tool(t, "sqfsdiff", "squashfs-tools-ng")
	if out, stderr, err := run("", nil, nil, bin, "-I", "-T", "-a", a, "-b", b); err != nil {
		t.Fatalf("sqfsdiff -I -T -a %s -b %s: %v\n%s%s", a, b, err, out, stderr)
	}
}

// EnvWith returns the process environment with the variable key set to
// value (replacing any previous value), for Mksquashfs.
func EnvWith(key, value string) []string {
	return append(EnvWithout(key), key+"="+value)
}

// EnvWithout returns the process environment without the variable key
// (mksquashfs without SOURCE_DATE_EPOCH takes times from the files).
func EnvWithout(key string) []string {
	env := []string{}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, key+"=") {
			env = append(env, e)
		}
	}
	return env
}
