package kexec

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nbimg/nbimg/internal/ioctx"
)

// TreeFiles are the files of a kexec tree, in the (bytewise sorted) order
// the tarball holds them.
var TreeFiles = []string{KernelName, InitrdName, ScriptName}

// WriteTarball writes a gzip-compressed tar of the kexec tree in dir to w:
// the directory TarballDir and in it the TreeFiles, in that order, each
// owned by 0:0 (user and group names "root"), dated mtime, with mode 0755
// when the file in dir is executable by its owner and 0644 otherwise. The
// gzip header has no name and no time, so the same tree and mtime give the
// same bytes.
func WriteTarball(ctx context.Context, w io.Writer, dir string, mtime time.Time) error {
	mtime = mtime.UTC().Truncate(time.Second)
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	hdr := func(name string, typ byte, mode, size int64) *tar.Header {
		return &tar.Header{
			Typeflag: typ, Name: name, Mode: mode, Size: size,
			ModTime: mtime, Uname: "root", Gname: "root",
			Format: tar.FormatUSTAR,
		}
	}
	if err := tw.WriteHeader(hdr(TarballDir+"/", tar.TypeDir, 0o755, 0)); err != nil {
		return fmt.Errorf("kexec tarball: %w", err)
	}
	for _, name := range TreeFiles {
		if err := addFile(ctx, tw, filepath.Join(dir, name), func(mode, size int64) *tar.Header {
			h := hdr(TarballDir+"/"+name, tar.TypeReg, mode, size)
			if size >= 1<<33 { // past ustar's 8 GiB: a PAX size record
				h.Format = tar.FormatPAX
			}
			return h
		}); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("kexec tarball: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("kexec tarball: %w", err)
	}
	return nil
}

func addFile(ctx context.Context, tw *tar.Writer, path string, hdr func(mode, size int64) *tar.Header) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("kexec tarball: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("kexec tarball: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("kexec tarball: %s is not a regular file", path)
	}
	mode := int64(0o644)
	if st.Mode().Perm()&0o100 != 0 {
		mode = 0o755
	}
	if err := tw.WriteHeader(hdr(mode, st.Size())); err != nil {
		return fmt.Errorf("kexec tarball: %s: %w", path, err)
	}
	n, err := io.Copy(tw, ioctx.Reader(ctx, f))
	if err != nil {
		return fmt.Errorf("kexec tarball: reading %s: %w", path, err)
	}
	if n != st.Size() {
		return fmt.Errorf("kexec tarball: %s changed size while being read", path)
	}
	return nil
}
