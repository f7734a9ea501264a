package kmod

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

// Load loads one module file into the kernel: finit_module for a plain
// .ko, init_module after decompressing in Go otherwise. A module that is
// already loaded is not an error.
func Load(file string) error {
	var err error
	switch {
	case strings.HasSuffix(file, ".ko"):
		var f *os.File
		f, err = os.Open(file)
		if err != nil {
			return fmt.Errorf("kmod: %w", err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
	default:
		var img []byte
		img, err = readModule(file)
		if err != nil {
			return err
		}
		err = unix.InitModule(img, "")
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("kmod: loading %s: %w", filepath.Base(file), err)
	}
	return nil
}

func readModule(file string) ([]byte, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	var r io.Reader
	switch {
	case strings.HasSuffix(file, ".ko.xz"):
		r, err = xz.NewReader(bytes.NewReader(raw))
	case strings.HasSuffix(file, ".ko.gz"):
		r, err = gzip.NewReader(bytes.NewReader(raw))
	case strings.HasSuffix(file, ".ko.zst"):
		var d *zstd.Decoder
		d, err = zstd.NewReader(bytes.NewReader(raw), zstd.WithDecoderConcurrency(1))
		if err == nil {
			defer d.Close()
			r = d
		}
	default:
		return nil, fmt.Errorf("kmod: %s: unknown module file type", file)
	}
	if err != nil {
		return nil, fmt.Errorf("kmod: decompressing %s: %w", filepath.Base(file), err)
	}
	img, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("kmod: decompressing %s: %w", filepath.Base(file), err)
	}
	return img, nil
}

// Modaliases returns the modalias of every device the kernel lists under
// /sys/bus/*/devices (sorted, each once).
func Modaliases() ([]string, error) {
	files, err := filepath.Glob("/sys/bus/*/devices/*/modalias")
	if err != nil {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // devices come and go
		}
		a := strings.TrimSpace(string(b))
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out, nil
}
