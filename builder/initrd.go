package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nbimg/nbimg/initrd"
	"github.com/nbimg/nbimg/internal/atomicfile"
	"github.com/nbimg/nbimg/internal/ioctx"
	"github.com/nbimg/nbimg/nixstore"
)

// InitrdOptions say how the store image is made and appended to the base
// initrds.
type InitrdOptions struct {
	// Image builds the store image from the closure. Ignored when
	// ImageFile is set.
	Image ImageWriter
	// ImageFile is an existing store image (a squashfs) appended as it is.
	ImageFile string
	Initrd    initrd.Options // the appended segment
	Bases     []string       // host paths of the base initrds, written unchanged in order
	// Logf, when set, receives a line per step.
	Logf func(format string, args ...any)
}

// InitrdResult describes a written initrd.
type InitrdResult struct {
	Image  *ImageInfo // the store image built; nil when appended from ImageFile
	Initrd *initrd.Result
	// Warnings are problems that did not stop the build: base initrds
	// holding data the kernel cannot unpack, an initrd over 2 GiB.
	Warnings []string
	// Store describes the store image served over the network (with
	// --store-url), nil otherwise.
	Store *ManifestStore
}

// ErrNotSquashfs is returned for an image file that is not a SquashFS.
var ErrNotSquashfs = errors.New("builder: not a SquashFS image (no hsqs magic)")

// baseInput is an opened base initrd.
type baseInput struct {
	path string
	f    *os.File
}

// openBases opens every base initrd, checks it is a regular file, and
// lists what in it the kernel could not unpack as warnings.
func openBases(paths []string, logf func(string, ...any)) ([]baseInput, []string, error) {
	var (
		bases    []baseInput
		warnings []string
	)
	for _, p := range paths {
		f, size, err := openRegular("base initrd", p)
		if err != nil {
			closeBases(bases)
			return nil, nil, err
		}
		bases = append(bases, baseInput{p, f})
		info, err := initrd.Identify(f, size)
		if err != nil {
			closeBases(bases)
			return nil, nil, fmt.Errorf("base initrd %s: %w", p, err)
		}
		logf("base initrd %s: %s, %d bytes", p, info, size)
		if size == 0 {
			warnings = append(warnings, fmt.Sprintf("base initrd %s is empty", p))
		}
		for _, s := range info.Segments {
			switch s.Format {
			case initrd.FormatUnknown, initrd.FormatOldCPIO, initrd.FormatLZ4Frame:
				warnings = append(warnings, fmt.Sprintf("base initrd %s: %s data at offset %d, which the kernel cannot unpack", p, s.Format, s.Offset))
			}
		}
	}
	return bases, warnings, nil
}

func closeBases(bases []baseInput) {
	for _, b := range bases {
		b.f.Close()
	}
}

// openRegular opens a regular file given by the user, naming it in errors.
func openRegular(what, p string) (*os.File, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", what, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("%s %s: %w", what, p, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s %s: not a regular file", what, p)
	}
	return f, st.Size(), nil
}

// openImageFile opens an existing store image and checks that it is a
// SquashFS small enough for newc.
func openImageFile(p string) (*os.File, error) {
	f, size, err := openRegular("store image", p)
	if err != nil {
		return nil, err
	}
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || string(magic[:]) != "hsqs" {
		f.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("store image %s: %w", p, err)
		}
		return nil, fmt.Errorf("store image %s: %w", p, ErrNotSquashfs)
	}
	if size > initrd.MaxFileSize {
		f.Close()
		return nil, fmt.Errorf("store image %s: %w (it is %d bytes)", p, initrd.ErrFileTooLarge, size)
	}
	return f, nil
}

// WriteInitrd writes the base initrds to out, then a segment holding the
// store image: o.ImageFile, or the closure's image built by o.Image
// straight into the segment, so it is never stored twice. out must be
// empty and seekable. Every input is opened and checked before anything
// is written.
func WriteInitrd(ctx context.Context, out *os.File, c *nixstore.Closure, o InitrdOptions) (*InitrdResult, error) {
	logf := logOrDiscard(o.Logf)
	bases, warnings, err := openBases(o.Bases, logf)
	if err != nil {
		return nil, err
	}
	defer closeBases(bases)
	var image *os.File
	if o.ImageFile != "" {
		if image, err = openImageFile(o.ImageFile); err != nil {
			return nil, err
		}
		defer image.Close()
	} else if o.Image == nil || c == nil {
		return nil, errors.New("builder: WriteInitrd needs a closure and an image writer, or an image file")
	}
	if o.Initrd.TempDir == "" {
		o.Initrd.TempDir = filepath.Dir(out.Name())
	}
	w, err := initrd.NewWriter(out, o.Initrd)
	if err != nil {
		return nil, err
	}
	for _, b := range bases {
		if _, err := w.AppendBase(ioctx.Reader(ctx, b.f)); err != nil {
			w.Abort()
			return nil, fmt.Errorf("base initrd %s: %w", b.path, err)
		}
	}
	res := &InitrdResult{}
	if image != nil {
		if err := w.AppendImage(ioctx.Reader(ctx, image)); err != nil {
			w.Abort()
			return nil, fmt.Errorf("store image %s: %w", o.ImageFile, err)
		}
	} else {
		iw, err := w.CreateImage()
		if err != nil {
			w.Abort()
			return nil, err
		}
		if res.Image, err = o.Image.WriteImage(ctx, iw, c); err != nil {
			w.Abort()
			return nil, err
		}
		if st := res.Image.Squashfs; st != nil {
			if s := CacheSummary(*st); s != "" {
				logf("%s", s)
			}
		}
	}
	if res.Initrd, err = w.CloseContext(ctx); err != nil {
		return nil, err
	}
	res.Warnings = append(warnings, res.Initrd.Warnings...)
	return res, nil
}

// InitrdFile writes the initrd WriteInitrd makes to the file name,
// replacing it atomically; nothing is left behind on failure.
func InitrdFile(ctx context.Context, name string, c *nixstore.Closure, o InitrdOptions) (*InitrdResult, error) {
	if o.Initrd.TempDir == "" {
		o.Initrd.TempDir = filepath.Dir(name)
	}
	var res *InitrdResult
	err := atomicfile.Create(name, func(f *os.File) error {
		var err error
		res, err = WriteInitrd(ctx, f, c, o)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}
