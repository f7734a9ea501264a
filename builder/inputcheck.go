package builder

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nbimg/nbimg/internal/atomicfile"
	"github.com/nbimg/nbimg/squashfs"
)

// ErrEmptyKernel is returned for a kernel file with no bytes.
var ErrEmptyKernel = errors.New("builder: the kernel file is empty")

// checkKernel looks at the kernel file p before it is copied: an empty or
// unreadable file is an error; a file that is neither an x86 bzImage ("HdrS"
// at 0x202), an arm64 Image ("ARM\x64" at 56), an arm zImage (its magic at
// 0x24) nor an EFI application ("MZ") returns a warning, as it is almost
// certainly not a kernel (a text file, a wrong path), though a loader may
// still take it.
func checkKernel(p string) (warning string, err error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("kernel: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("kernel %s: %w", p, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("kernel %s: not a regular file", p)
	}
	if st.Size() == 0 {
		return "", fmt.Errorf("kernel %s: %w", p, ErrEmptyKernel)
	}
	var head [0x206]byte
	n, err := io.ReadFull(f, head[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", fmt.Errorf("kernel %s: %w", p, err)
	}
	b := head[:n]
	switch {
	case len(b) >= 0x206 && string(b[0x202:0x206]) == "HdrS":
	case len(b) >= 60 && string(b[56:60]) == "ARM\x64":
	case len(b) >= 0x28 && string(b[0x24:0x28]) == "\x18\x28\x6f\x01":
	case len(b) >= 2 && string(b[:2]) == "MZ":
	default:
		return fmt.Sprintf("kernel %s is not a Linux kernel image this tool knows (no bzImage, arm64 Image, zImage or EFI header): is it the right file?", p), nil
	}
	return "", nil
}

// pruneOutput removes from the tree of host directories the image file out
// itself and the temporaries of earlier writes of it, as mksquashfs leaves
// its own output out, so an output inside an input directory is not
// packed into the next image. It returns the host paths it left out.
func pruneOutput(t *squashfs.Tree, out string) []string {
	dirInfo, err := os.Stat(filepath.Dir(out))
	if err != nil {
		return nil
	}
	base := filepath.Base(out)
	tmpPrefix := atomicfile.TempPrefix(out)
	var left []string
	var walk func(n *squashfs.Node)
	walk = func(n *squashfs.Node) {
		kept := n.Children[:0]
		for _, c := range n.Children {
			if c.Type == squashfs.TypeFile && c.HostPath != "" &&
				(c.Name == base || strings.HasPrefix(c.Name, tmpPrefix)) {
				if st, err := os.Stat(filepath.Dir(c.HostPath)); err == nil && os.SameFile(st, dirInfo) {
					left = append(left, c.HostPath)
					continue
				}
			}
			if c.Type == squashfs.TypeDir {
				walk(c)
			}
			kept = append(kept, c)
		}
		n.Children = kept
	}
	walk(t.Root)
	return left
}
