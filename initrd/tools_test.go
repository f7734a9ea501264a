package initrd

// Checks with readers someone else wrote: GNU cpio, bsdtar (libarchive) and
// the zstd, gzip and xz command-line tools. Each test skips when a tool is
// missing, or fails when NBIMG_REQUIRE_TOOLS is set.

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbimg/nbimg/internal/check"
	"github.com/nbimg/nbimg/internal/testutil"
)

// toolBase makes a base initrd with GNU cpio and gzip, as a distribution
// would: a gzip-compressed newc archive of a small tree.
func toolBase(t testing.TB) []byte {
	cpioTool := testutil.Tool(t, "cpio", "cpio")
	gzipTool := testutil.Tool(t, "gzip", "gzip")
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "init"), []byte("#!/bin/sh\necho stage 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	list := check.Run(t, dir, nil, "find", ".")
	archive := check.Run(t, dir, list, cpioTool, "--quiet", "-o", "-H", "newc")
	return check.Run(t, dir, archive, gzipTool, "-9n")
}

func TestToolsReadSegment(t *testing.T) {
	base := toolBase(t)
	image := bytes.Repeat([]byte("hsqs\x00\x01\x02 not really a squashfs "), 5001) // not a multiple of 4
	decompressors := map[Compression][]string{
		Zstd: {"zstd", "zstd", "-dc"},
		Gzip: {"gzip", "gzip", "-dc"},
		XZ:   {"xz", "xz-utils", "-dc"},
	}
	for _, c := range []Compression{None, Zstd, Gzip, XZ} {
		t.Run(c.String(), func(t *testing.T) {
			out, res := buildInitrd(t, Options{Compression: c, Name: "/nix-store.squashfs"}, image, base)
			if !bytes.Equal(out[:len(base)], base) {
				t.Fatal("base changed")
			}
			seg := out[res.SegmentOffset:]
			plain := seg
			if d, ok := decompressors[c]; ok {
				tool := testutil.Tool(t, d[0], d[1])
				plain = check.Run(t, "", seg, tool, d[2:]...)
			}
			if c == XZ {
				tool := testutil.Tool(t, "xz", "xz-utils")
				f := filepath.Join(t.TempDir(), "seg.xz")
				testutil.NoError(t, os.WriteFile(f, seg, 0o644))
				if info := check.Run(t, "", nil, tool, "--robot", "--list", "-vv", f); !bytes.Contains(info, []byte("CRC32")) {
					t.Errorf("xz segment is not CRC32-checked:\n%s", info)
				}
			}

			// GNU cpio: list with details, then extract and compare.
			lines := check.CpioList(t, plain, true)
			if len(lines) != 1 || !strings.HasSuffix(lines[0], " nix-store.squashfs") ||
				!strings.HasPrefix(lines[0], "-r--r--r--") || !strings.Contains(lines[0], "1970") {
				t.Errorf("cpio -tv:\n%s", strings.Join(lines, "\n"))
			}
			dir := t.TempDir()
			check.CpioExtract(t, plain, dir)
			if got := mustReadFile(t, filepath.Join(dir, "nix-store.squashfs")); !bytes.Equal(got, image) {
				t.Errorf("cpio extracted %d bytes that differ from the %d-byte image", len(got), len(image))
			}

			// bsdtar reads the segment as written, compressed or not.
			if list := check.BsdtarList(t, seg); len(list) != 1 || list[0] != "nix-store.squashfs" {
				t.Errorf("bsdtar -t: %q", list)
			}
			dir = t.TempDir()
			check.BsdtarExtract(t, seg, dir)
			if got := mustReadFile(t, filepath.Join(dir, "nix-store.squashfs")); !bytes.Equal(got, image) {
				t.Error("bsdtar extracted different bytes")
			}
			st, err := os.Stat(filepath.Join(dir, "nix-store.squashfs"))
			if err != nil || !st.ModTime().Equal(time.Unix(DefaultMTime, 0)) {
				t.Errorf("bsdtar: mtime %v, %v", st.ModTime(), err)
			}
		})
	}
}

// TestToolsReadArchive checks a tree with directories, a symbolic link and
// modes through cpio and bsdtar.
func TestToolsReadArchive(t *testing.T) {
	a, err := NewArchive(time.Unix(1700000000, 0))
	testutil.NoError(t, err)
	testutil.NoError(t, a.AddBytes("/bin/busybox", 0o755, []byte("\x7fELF")))
	testutil.NoError(t, a.AddSymlink("/bin/sh", "busybox"))
	testutil.NoError(t, a.AddDir("/etc", 0o700))
	testutil.NoError(t, a.AddBytes("/etc/odd", 0o600, []byte("12345")))
	testutil.NoError(t, a.AddBytes("/init", 0o755, []byte("#!/bin/sh\n")))
	b := mustArchive(t, a)
	want := "bin\nbin/busybox\nbin/sh\netc\netc/odd\ninit"
	if got := strings.Join(check.CpioList(t, b, false), "\n"); got != want {
		t.Errorf("cpio -t:\n%s\nwant\n%s", got, want)
	}
	if got := strings.Join(check.BsdtarList(t, b), "\n"); got != want {
		t.Errorf("bsdtar -t:\n%s", got)
	}
	for _, extract := range []struct {
		tool string
		run  func(testing.TB, []byte, string)
	}{{"cpio", check.CpioExtract}, {"bsdtar", check.BsdtarExtract}} {
		dir := t.TempDir()
		extract.run(t, b, dir)
		if l, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || l != "busybox" {
			t.Errorf("%s: bin/sh -> %q, %v", extract.tool, l, err)
		}
		st, err := os.Stat(filepath.Join(dir, "etc/odd"))
		if err != nil || st.Mode().Perm() != 0o600 || st.ModTime().Unix() != 1700000000 {
			t.Errorf("%s: etc/odd %v %v", extract.tool, st, err)
		} else if got := mustReadFile(t, filepath.Join(dir, "etc/odd")); string(got) != "12345" {
			t.Errorf("etc/odd = %q", got)
		}
	}
}

// TestToolsIdentify compresses a cpio archive with each tool and checks
// that Identify names the format, also inside a concatenation.
func TestToolsIdentify(t *testing.T) {
	cpioTool := testutil.Tool(t, "cpio", "cpio")
	dir := t.TempDir()
	testutil.NoError(t, os.WriteFile(filepath.Join(dir, "f"), bytes.Repeat([]byte("data "), 1000), 0o644))
	archive := check.Run(t, dir, []byte("f\n"), cpioTool, "--quiet", "-o", "-H", "newc")
	for _, tc := range []struct {
		format Format
		tool   []string // name, Debian package, arguments
		toEnd  bool
	}{
		{FormatGzip, []string{"gzip", "gzip", "-9n"}, false},
		{FormatZstd, []string{"zstd", "zstd", "-19", "-q"}, false},
		{FormatXZ, []string{"xz", "xz-utils", "--check=crc32"}, true},
		{FormatLZMA, []string{"xz", "xz-utils", "--format=lzma"}, true},
		{FormatBzip2, []string{"bzip2", "bzip2", "-9"}, true},
		{FormatLZ4, []string{"lz4", "lz4", "-l", "-q"}, true},
		{FormatLZ4Frame, []string{"lz4", "lz4", "-q"}, true},
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			tool := testutil.Tool(t, tc.tool[0], tc.tool[1])
			z := check.Run(t, "", archive, tool, append(tc.tool[2:], "-c")...)
			info, err := Identify(bytes.NewReader(z), int64(len(z)))
			if err != nil || len(info.Segments) != 1 || info.Segments[0].Format != tc.format || info.Compression() != string(tc.format) {
				t.Fatalf("alone: %v, %v", info, err)
			}
			// Microcode-style: an uncompressed archive, then the compressed
			// one, as Debian's initrds are made.
			cat := append(append(bytes.Clone(archive), z...), 0, 0, 0, 0)
			info, err = Identify(bytes.NewReader(cat), int64(len(cat)))
			if err != nil || len(info.Segments) != 2 {
				t.Fatalf("concatenated: %v, %v", info, err)
			}
			s0, s1 := info.Segments[0], info.Segments[1]
			// GNU cpio pads its output to 512-byte blocks; the segment ends
			// with the trailer record.
			if s0.Offset != 0 || s0.Format != FormatCPIO || s0.Size > int64(len(archive)) || s0.Size <= int64(len(archive))-512 ||
				s1.Format != tc.format || s1.Offset != int64(len(archive)) || s1.ToEnd != tc.toEnd {
				t.Errorf("concatenated: %+v", info.Segments)
			}
			if !tc.toEnd && s1.Size != int64(len(z)) {
				t.Errorf("%s segment of %d bytes found as %d", tc.format, len(z), s1.Size)
			}
			if want := "cpio + " + string(tc.format); info.Compression() != want {
				t.Errorf("Compression() = %q, want %q", info.Compression(), want)
			}
		})
	}
}

// TestIdentifyHostInitrd reads the Debian kernel's initrd, made by
// initramfs-tools.
func TestIdentifyHostInitrd(t *testing.T) {
	matches, err := filepath.Glob("/boot/initrd.img-*")
	testutil.NoError(t, err)
	if len(matches) == 0 {
		testutil.SkipOrFail(t, "no /boot/initrd.img-*: install the Debian package linux-image-cloud-amd64")
	}
	f, err := os.Open(matches[0])
	if err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	testutil.NoError(t, err)
	info, err := Identify(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %v", matches[0], info)
	for _, s := range info.Segments {
		if s.Format == FormatUnknown {
			t.Errorf("unknown segment in %s: %v", matches[0], info)
		}
	}
}
