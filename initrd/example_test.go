package initrd_test

import (
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nbimg/nbimg/initrd"
)

// A stage 1 initrd as one deterministic cpio archive.
func ExampleArchive() {
	a, err := initrd.NewArchive(time.Time{}) // every mtime is 1
	if err != nil {
		log.Fatal(err)
	}
	if err := a.AddBytes("/init", 0o755, []byte("#!/bin/busybox sh\necho hello\n")); err != nil {
		log.Fatal(err)
	}
	if err := a.AddSymlink("/bin/sh", "/bin/busybox"); err != nil {
		log.Fatal(err)
	}
	n, err := a.WriteTo(io.Discard)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(a.Names(), n)
	// Output: [bin bin/sh init] 520
}

// Streaming a store image into the initrd: the image is written through a
// WriteSeeker view of the segment, so a squashfs writer can patch its
// superblock at the end without a temporary copy.
func ExampleWriter_CreateImage() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	out, err := os.Create(filepath.Join(dir, "initrd"))
	if err != nil {
		log.Fatal(err)
	}
	defer out.Close()

	w, err := initrd.NewWriter(out, initrd.Options{}) // /nix-store.squashfs, uncompressed
	if err != nil {
		log.Fatal(err)
	}
	// The distribution's stage 1 initrd, copied unchanged.
	if _, err := w.AppendBase(strings.NewReader("...stage 1 initrd...")); err != nil {
		log.Fatal(err)
	}
	img, err := w.CreateImage()
	if err != nil {
		log.Fatal(err)
	}
	// What a squashfs writer does: a placeholder superblock, the data,
	// then the real superblock.
	if _, err := io.WriteString(img, "placeholder superblock"); err != nil {
		log.Fatal(err)
	}
	if _, err := io.WriteString(img, strings.Repeat("data", 100)); err != nil {
		log.Fatal(err)
	}
	if _, err := img.Seek(0, io.SeekStart); err != nil {
		log.Fatal(err)
	}
	if _, err := io.WriteString(img, "the final superblock!!"); err != nil {
		log.Fatal(err)
	}

	res, err := w.Close()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Bases, res.SegmentOffset, res.ImageSize, res.Size)
	// Output: [20] 20 422 700
}

// What a base initrd is made of, for verbose output.
func ExampleIdentify() {
	f, err := os.Open("/boot/initrd.img")
	if err != nil {
		return
	}
	defer f.Close()
	st, _ := f.Stat()
	info, err := initrd.Identify(f, st.Size())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.Compression()) // such as "cpio + zstd"
}
