package check

import (
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// CpioList returns the names GNU cpio lists (cpio -t) in an uncompressed
// cpio archive; with verbose, the long lines of cpio -tv.
func CpioList(t testing.TB, archive []byte, verbose bool) []string {
	t.Helper()
	bin := testutil.Tool(t, "cpio", "cpio")
	args := []string{"-t", "--quiet"}
	if verbose {
		args = append(args, "-v")
	}
	return lines(Run(t, "", archive, bin, args...))
}

// CpioExtract extracts an uncompressed cpio archive into dir with GNU cpio
// (cpio -i -d, keeping modification times).
func CpioExtract(t testing.TB, archive []byte, dir string) {
	t.Helper()
	bin := testutil.Tool(t, "cpio", "cpio")
	Run(t, dir, archive, bin, "-i", "-d", "-m", "--quiet")
}

// BsdtarList returns the names bsdtar (libarchive) lists in archive, in any
// format and compression libarchive recognises.
func BsdtarList(t testing.TB, archive []byte) []string {
	t.Helper()
	bin := testutil.Tool(t, "bsdtar", "libarchive-tools")
	return lines(Run(t, "", archive, bin, "-t", "-f", "-"))
}

// BsdtarExtract extracts archive into dir with bsdtar.
func BsdtarExtract(t testing.TB, archive []byte, dir string) {
	t.Helper()
	bin := testutil.Tool(t, "bsdtar", "libarchive-tools")
	Run(t, dir, archive, bin, "-x", "-f", "-")
}

// TarList returns the lines of GNU tar's verbose listing of the gzipped
// tarball file, with numeric owners and UTC times
// (tar --numeric-owner --utc -tvzf).
func TarList(t testing.TB, file string) []string {
	t.Helper()
	bin := testutil.Tool(t, "tar", "tar")
	return lines(Run(t, "", nil, bin, "--numeric-owner", "--utc", "-tvzf", file))
}
