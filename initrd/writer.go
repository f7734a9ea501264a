package initrd

import (
	"context"
	"errors"
	"fmt"
	"github.com/nbimg/nbimg/internal/ioctx"
	"io"
	"os"
	"time"
)

// DefaultName is where NixOS stage 1 looks for the store image: netboot.nix
// mounts the device "../nix-store.squashfs", which stage 1 resolves under
// /mnt-root, that is /nix-store.squashfs in the initramfs root.
const DefaultName = "/nix-store.squashfs"

// WarnSize is the initrd size above which [Writer.Close] returns a warning.
const WarnSize = 2 << 30

// ErrState is returned when a [Writer] method is called out of order.
var ErrState = errors.New("initrd: writer used out of order")

// imageMode is the mode of the store image, as a file copied out of the
// Nix store has.
const imageMode = 0o444

// Options configures a [Writer]. The zero value gives the defaults.
type Options struct {
	// Name is the path of the image inside the segment; "" means
	// DefaultName.
	Name string
	// MTime is the modification time of the segment's entries; the zero
	// time means DefaultMTime.
	MTime time.Time
	// Compression of the appended segment; the default is None.
	Compression Compression
	// TempDir holds the image while a compressed segment is built ("" means
	// os.TempDir()). An uncompressed segment needs no temporary file.
	TempDir string
}

// Result describes a finished initrd.
type Result struct {
	// Size is the number of bytes written.
	Size int64
	// Bases is the size of each base, in order.
	Bases []int64
	// SegmentOffset is where the appended segment starts, after the bases
	// and the alignment padding; -1 when no image was added.
	SegmentOffset int64
	// SegmentSize is the size of the segment as written (compressed, if
	// it is).
	SegmentSize int64
	// ImageSize is the size of the image file inside the segment.
	ImageSize int64
	// Warnings are problems that did not stop the writer, such as an
	// initrd larger than WarnSize.
	Warnings []string
}

type writerState int

const (
	stateBases writerState = iota
	stateImage
	stateDone
)

// Writer writes an initrd: bases unchanged, then one segment with the
// store image. Call [Writer.AppendBase] for each base, then either
// [Writer.CreateImage] and write the image through the returned view, or
// [Writer.AppendImage]; then [Writer.Close]. Nothing is written after an
// error; the caller removes the output.
type Writer struct {
	out   io.WriteSeeker
	opts  Options
	name  string
	mtime time.Time
	start int64 // position of out when the writer was made
	off   int64 // bytes written so far, relative to start
	state writerState
	err   error

	bases   []int64
	segOff  int64
	hdrOff  int64 // uncompressed: offset of the image's newc header
	bodyOff int64 // uncompressed: offset of the image body
	img     *ImageWriter
	spool   *os.File // compressed: holds the image until Close
}

// NewWriter returns a writer whose initrd starts at the current position
// of out.
func NewWriter(out io.WriteSeeker, opts Options) (*Writer, error) {
	name := opts.Name
	if name == "" {
		name = DefaultName
	}
	clean, err := CleanName(name)
	if err != nil {
		return nil, err
	}
	mtime, err := resolveMTime(opts.MTime)
	if err != nil {
		return nil, err
	}
	if opts.Compression < None || opts.Compression > XZ {
		return nil, fmt.Errorf("%w %v", ErrUnknownCompression, opts.Compression)
	}
	start, err := out.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("initrd: output is not seekable: %w", err)
	}
	return &Writer{out: out, opts: opts, name: clean, mtime: mtime, start: start, segOff: -1}, nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

func (w *Writer) write(p []byte) error {
	n, err := w.out.Write(p)
	w.off += int64(n)
	if err != nil {
		return w.fail(fmt.Errorf("writing initrd: %w", err))
	}
	return nil
}

// AppendBase copies an existing initrd to the output unchanged and returns
// its size. Bases must come before the image.
func (w *Writer) AppendBase(r io.Reader) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.state != stateBases {
		return 0, fmt.Errorf("%w: base after the image", ErrState)
	}
	n, err := io.Copy(w.out, r)
	w.off += n
	if err != nil {
		return n, w.fail(fmt.Errorf("copying base initrd: %w", err))
	}
	w.bases = append(w.bases, n)
	return n, nil
}

// segmentArchive returns the segment's archive with the image of the given
// size, whose contents open returns.
func (w *Writer) segmentArchive(size int64, open func() (io.ReadCloser, error)) (*Archive, error) {
	a, err := NewArchive(w.mtime)
	if err != nil {
		return nil, err
	}
	if err := a.AddFile(w.name, imageMode, size, open); err != nil {
		return nil, err
	}
	return a, nil
}

// align pads the output with NUL bytes to a multiple of 4 from its start:
// the kernel looks for cpio magic only there.
func (w *Writer) align() error {
	if pad := (4 - w.off%4) % 4; pad > 0 {
		return w.write(make([]byte, pad))
	}
	return nil
}

// CreateImage starts the segment and returns the view the image is written
// through. The view is an [io.WriteSeeker] whose offset 0 is the first byte
// of the image, so a squashfs writer can seek back and patch its
// superblock; the image's size is the highest offset written. Without
// compression the bytes go straight to the output; with compression they
// are held in a temporary file until Close. Close the [Writer], not the
// view, when the image is complete.
func (w *Writer) CreateImage() (*ImageWriter, error) {
	if w.err != nil {
		return nil, w.err
	}
	if w.state != stateBases {
		return nil, fmt.Errorf("%w: image added twice or after Close", ErrState)
	}
	if err := w.align(); err != nil {
		return nil, err
	}
	w.segOff = w.off
	w.state = stateImage
	if w.opts.Compression != None {
		f, err := os.CreateTemp(w.opts.TempDir, "nbimg-image-*")
		if err != nil {
			return nil, w.fail(fmt.Errorf("creating temporary image file: %w", err))
		}
		// Unlinked at once: nothing is left behind whatever happens.
		_ = os.Remove(f.Name())
		w.spool = f
		w.img = &ImageWriter{w: f, rw: f, base: 0, upos: 0}
		return w.img, nil
	}
	// Parents and the image's header with a size of 0, patched in Close.
	a, err := w.segmentArchive(0, nil)
	if err != nil {
		return nil, w.fail(err)
	}
	names := a.Names()
	cw := &countWriter{w: w.out}
	err = a.writeEntries(cw, names[:len(names)-1], 1)
	w.off += cw.n
	if err != nil {
		return nil, w.fail(fmt.Errorf("writing initrd segment: %w", err))
	}
	hb, err := headerBytes(a.header(a.entries[w.name], int64(len(names))))
	if err != nil {
		return nil, w.fail(fmt.Errorf("writing initrd segment: %w", err))
	}
	w.hdrOff = w.off
	if err := w.write(hb); err != nil {
		return nil, err
	}
	w.bodyOff = w.off
	w.img = &ImageWriter{w: w.out, base: w.start + w.bodyOff, upos: 0}
	if ra, ok := w.out.(io.ReaderAt); ok {
		w.img.rw = ra
	}
	return w.img, nil
}

// AppendImage adds the image read from r (an existing squashfs file, say).
func (w *Writer) AppendImage(r io.Reader) error {
	iw, err := w.CreateImage()
	if err != nil {
		return err
	}
	if _, err := io.Copy(iw, r); err != nil {
		return w.fail(fmt.Errorf("copying image: %w", err))
	}
	return nil
}

// Abort releases the writer's temporary file without finishing the
// initrd. The output is left incomplete for the caller to remove.
func (w *Writer) Abort() {
	w.fail(fmt.Errorf("%w: aborted", ErrState))
	w.state = stateDone
	if w.spool != nil {
		w.spool.Close()
		w.spool = nil
	}
}

// Close finishes the segment (patching the image's size into its header,
// then padding and the trailer) and reports what was written. Without an
// image, the output is the bases alone.
func (w *Writer) Close() (*Result, error) {
	return w.CloseContext(context.Background())
}

// CloseContext is Close, stopping early with ctx's error when ctx is done
// while a compressed segment is being written.
func (w *Writer) CloseContext(ctx context.Context) (*Result, error) {
	defer func() {
		if w.spool != nil {
			w.spool.Close()
			w.spool = nil
		}
	}()
	if w.err != nil {
		return nil, w.err
	}
	if w.state == stateDone {
		return nil, fmt.Errorf("%w: closed twice", ErrState)
	}
	res := &Result{Bases: w.bases, SegmentOffset: -1}
	if w.state == stateImage {
		if w.img.err != nil {
			return nil, w.fail(w.img.err)
		}
		size := w.img.size
		var err error
		if w.spool != nil {
			err = w.finishCompressed(ctx, size)
		} else {
			err = w.finishPlain(size)
		}
		if err != nil {
			return nil, w.fail(err)
		}
		res.SegmentOffset = w.segOff
		res.SegmentSize = w.off - w.segOff
		res.ImageSize = size
	}
	w.state = stateDone
	w.img.closed()
	res.Size = w.off
	if res.Size > WarnSize {
		res.Warnings = append(res.Warnings, fmt.Sprintf(
			"the initrd is %d bytes, more than 2 GiB: many iPXE builds and EFI loaders cannot load it", res.Size))
	}
	return res, nil
}

func (w *Writer) finishPlain(size int64) error {
	if _, err := w.out.Seek(w.start+w.hdrOff+sizeField, io.SeekStart); err != nil {
		return fmt.Errorf("patching image size: %w", err)
	}
	if _, err := fmt.Fprintf(w.out, "%08X", size); err != nil {
		return fmt.Errorf("patching image size: %w", err)
	}
	w.off = w.bodyOff + size
	if _, err := w.out.Seek(w.start+w.off, io.SeekStart); err != nil {
		return fmt.Errorf("writing initrd segment: %w", err)
	}
	if err := w.align(); err != nil {
		return err
	}
	cw := &countWriter{w: w.out}
	err := writeTrailer(cw)
	w.off += cw.n
	return err
}

func (w *Writer) finishCompressed(ctx context.Context, size int64) error {
	spool := w.spool
	a, err := w.segmentArchive(size, func() (io.ReadCloser, error) {
		return io.NopCloser(ioctx.Reader(ctx, io.NewSectionReader(spool, 0, size))), nil
	})
	if err != nil {
		return err
	}
	cw := &countWriter{w: w.out}
	defer func() { w.off += cw.n }()
	cz, err := newCompressor(cw, w.opts.Compression)
	if err != nil {
		return err
	}
	if _, err := a.WriteTo(cz); err != nil {
		return fmt.Errorf("writing %v segment: %w", w.opts.Compression, err)
	}
	if err := cz.Close(); err != nil {
		return fmt.Errorf("writing %v segment: %w", w.opts.Compression, err)
	}
	return nil
}

// sizeField is the offset of c_filesize in a newc header.
const sizeField = 54

// ImageWriter is the view of the store image inside the segment. Offsets
// are relative to the image's first byte. It is not safe for concurrent
// use.
type ImageWriter struct {
	w    io.WriteSeeker
	rw   io.ReaderAt // nil if the output cannot be read back
	base int64       // position of the image's byte 0 in w
	pos  int64       // the view's offset
	upos int64       // where w is, relative to base; -1 if unknown
	size int64       // highest offset written
	err  error
	done bool
}

func (iw *ImageWriter) seekUnderlying() error {
	if iw.upos == iw.pos {
		return nil
	}
	if _, err := iw.w.Seek(iw.base+iw.pos, io.SeekStart); err != nil {
		iw.upos = -1
		return err
	}
	iw.upos = iw.pos
	return nil
}

func (iw *ImageWriter) check(n int64) error {
	if iw.done {
		return fmt.Errorf("%w: image written after Close", ErrState)
	}
	if iw.err != nil {
		return iw.err
	}
	if iw.pos+n > MaxFileSize {
		iw.err = fmt.Errorf("%w: the image passes %d bytes", ErrFileTooLarge, int64(MaxFileSize))
		return iw.err
	}
	return nil
}

func (iw *ImageWriter) advance(n int64, err error) error {
	iw.pos += n
	iw.upos = iw.pos
	if iw.pos > iw.size {
		iw.size = iw.pos
	}
	if err != nil {
		iw.upos = -1
		iw.err = fmt.Errorf("writing image: %w", err)
		return iw.err
	}
	return nil
}

// Write writes p at the current offset.
func (iw *ImageWriter) Write(p []byte) (int, error) {
	if err := iw.check(int64(len(p))); err != nil {
		return 0, err
	}
	if err := iw.seekUnderlying(); err != nil {
		return 0, iw.advance(0, err)
	}
	n, err := iw.w.Write(p)
	return n, iw.advance(int64(n), err)
}

// ReadFrom copies r to the current offset; with an *os.File on both sides
// the kernel copies the bytes.
func (iw *ImageWriter) ReadFrom(r io.Reader) (int64, error) {
	if err := iw.check(0); err != nil {
		return 0, err
	}
	if err := iw.seekUnderlying(); err != nil {
		return 0, iw.advance(0, err)
	}
	room := MaxFileSize - iw.pos
	n, err := io.Copy(iw.w, io.LimitReader(r, room+1))
	if err == nil && n > room {
		err = iw.check(n)
		_ = iw.advance(n, nil)
		return n, err
	}
	return n, iw.advance(n, err)
}

// Seek sets the offset for the next Write; io.SeekEnd is relative to the
// image's current size.
func (iw *ImageWriter) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = iw.pos + offset
	case io.SeekEnd:
		abs = iw.size + offset
	default:
		return iw.pos, fmt.Errorf("initrd: image seek: invalid whence %d", whence)
	}
	if abs < 0 {
		return iw.pos, fmt.Errorf("initrd: image seek to negative offset %d", abs)
	}
	iw.pos = abs
	return abs, nil
}

// ReadAt reads back bytes of the image already written. It fails when the
// output is not an io.ReaderAt.
func (iw *ImageWriter) ReadAt(p []byte, off int64) (int, error) {
	if iw.rw == nil {
		return 0, errors.New("initrd: the output cannot be read back")
	}
	if off < 0 || off >= iw.size {
		return 0, io.EOF
	}
	want := len(p)
	if rest := iw.size - off; int64(want) > rest {
		p = p[:rest]
	}
	n, err := iw.rw.ReadAt(p, iw.base+off)
	if err == nil && n < want {
		err = io.EOF
	}
	return n, err
}

// Size returns the image's size so far: the highest offset written.
func (iw *ImageWriter) Size() int64 { return iw.size }

func (iw *ImageWriter) closed() {
	if iw != nil {
		iw.done = true
	}
}
