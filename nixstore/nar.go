package nixstore

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// NAR (Nix ARchive) is the serialisation Nix hashes to get a store path's
// narHash: a sequence of strings, each an unsigned 64-bit little-endian
// length, the bytes, and zero padding to a multiple of 8. A node is
//
//	"(" "type" "regular" ["executable" ""] "contents" <data> ")"
//	"(" "type" "symlink" "target" <target> ")"
//	"(" "type" "directory" {"entry" "(" "name" <name> "node" <node> ")"} ")"
//
// after the magic string "nix-archive-1", with directory entries sorted
// bytewise by name. Only the owner's execute bit is recorded; times, owners
// and other permission bits are not.
const narMagic = "nix-archive-1"

type narWriter struct {
	w *bufio.Writer
}

var narPad [8]byte

func (n *narWriter) str(s string) error {
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(s)))
	n.w.Write(l[:])
	n.w.WriteString(s)
	_, err := n.w.Write(narPad[:(8-len(s)%8)%8])
	return err
}

func (n *narWriter) strs(ss ...string) error {
	for _, s := range ss {
		if err := n.str(s); err != nil {
			return err
		}
	}
	return nil
}

// WriteNAR writes the NAR serialisation of the file tree at hostPath to w.
func WriteNAR(w io.Writer, hostPath string) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	n := &narWriter{w: bw}
	if err := n.str(narMagic); err != nil {
		return err
	}
	if err := n.node(hostPath); err != nil {
		return err
	}
	return bw.Flush()
}

func (n *narWriter) node(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if err := n.strs("(", "type"); err != nil {
		return err
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		if err := n.str("regular"); err != nil {
			return err
		}
		if m&0o100 != 0 {
			if err := n.strs("executable", ""); err != nil {
				return err
			}
		}
		if err := n.str("contents"); err != nil {
			return err
		}
		if err := n.contents(p, fi.Size()); err != nil {
			return err
		}
	case m&fs.ModeSymlink != 0:
		t, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if err := n.strs("symlink", "target", t); err != nil {
			return err
		}
	case m.IsDir():
		if err := n.str("directory"); err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return fmt.Errorf("read directory %s: %w", p, err)
		}
		slices.Sort(names)
		for _, name := range names {
			if err := n.strs("entry", "(", "name", name, "node"); err != nil {
				return err
			}
			if err := n.node(filepath.Join(p, name)); err != nil {
				return err
			}
			if err := n.str(")"); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%s: a %v cannot be in the Nix store (only files, directories and symlinks)", p, m.Type())
	}
	return n.str(")")
}

func (n *narWriter) contents(p string, size int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(size))
	n.w.Write(l[:])
	got, err := io.Copy(n.w, io.LimitReader(f, size))
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	if got != size {
		return fmt.Errorf("%s changed while being read (%d bytes, expected %d)", p, got, size)
	}
	_, err = n.w.Write(narPad[:(8-size%8)%8])
	return err
}

// countWriter counts the bytes written through it.
type countWriter struct{ n uint64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += uint64(len(p))
	return len(p), nil
}

// NarHash returns the NAR hash ("sha256:<nix32>") and NAR size of the file
// tree at hostPath.
func NarHash(hostPath string) (hash string, size uint64, err error) {
	h := sha256.New()
	var c countWriter
	if err := WriteNAR(io.MultiWriter(h, &c), hostPath); err != nil {
		return "", 0, err
	}
	return FormatNarHash(h.Sum(nil)), c.n, nil
}
