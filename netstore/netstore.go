// Package netstore is the build side of the network store: it appends a
// dm-verity hash area to a store image (for NBD clients), and writes the
// small initrd segment that stage 0 runs from: the static stage-0 binary
// (/nbimg/stage0), its configuration (/nbimg/stage0.json) and the kernel
// modules it needs, copied from the system's own kernel-modules tree
// (/nbimg/lib/modules/<version>/...) with modules.dep, modules.alias and
// modules.builtin cut down to them.
//
// Image layout (the one file a server serves, nix-store.squashfs): the
// squashfs, zero padded to 4 KiB, then the hash area (a veritysetup
// superblock block, then the tree, top level first). A squashfs reader
// ignores what follows the filesystem, so the same file also serves HTTP
// clients, which check its sha256 instead; `veritysetup verify IMG IMG
// ROOT --hash-offset DATASIZE` checks it.
package netstore

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nbimg/nbimg/initrd"
	"github.com/nbimg/nbimg/stage0"
	"github.com/nbimg/nbimg/stage0/kmod"
	"github.com/nbimg/nbimg/verity"
)

// Verity is the result of AppendVerity.
type Verity struct {
	Tree *verity.Tree
	// DataSize is the size of the (padded) filesystem: where the hash
	// area starts.
	DataSize int64
	// Size is the whole file's size.
	Size int64
}

// Params returns the parameters stage 0 needs.
func (v *Verity) Params() verity.Params { return v.Tree.Params(v.DataSize) }

// SaltFor derives a salt from the image's content (its sha256 under a
// label): the same image always gets the same tree, and two images do not
// share salts.
func SaltFor(imageSHA256 []byte) []byte {
	s := sha256.Sum256(append([]byte("nbimg dm-verity salt\x00"), imageSHA256...))
	return s[:]
}

// UUIDFor derives the superblock's UUID from the salt (an RFC 4122
// version-4-shaped value, so tools print it as usual).
func UUIDFor(salt []byte) [16]byte {
	s := sha256.Sum256(append([]byte("nbimg dm-verity uuid\x00"), salt...))
	var u [16]byte
	copy(u[:], s[:16])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// AppendVerity pads the image file f to 4 KiB and appends its hash area.
// With a nil salt, the salt is SaltFor the image's sha256.
func AppendVerity(f *os.File, salt []byte) (*Verity, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("netstore: %w", err)
	}
	size := st.Size()
	if size == 0 {
		return nil, errors.New("netstore: empty store image")
	}
	data := (size + verity.BlockSize - 1) / verity.BlockSize * verity.BlockSize
	if data != size {
		if err := f.Truncate(data); err != nil {
			return nil, fmt.Errorf("netstore: padding the image: %w", err)
		}
	}
	if salt == nil {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, data)); err != nil {
			return nil, fmt.Errorf("netstore: reading the image: %w", err)
		}
		salt = SaltFor(h.Sum(nil))
	}
	w, err := verity.NewWriter(salt, UUIDFor(salt))
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(w, io.NewSectionReader(f, 0, data)); err != nil {
		return nil, fmt.Errorf("netstore: reading the image: %w", err)
	}
	tree, err := w.Close()
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteAt(tree.HashArea(), data); err != nil {
		return nil, fmt.Errorf("netstore: writing the hash area: %w", err)
	}
	return &Verity{Tree: tree, DataSize: data, Size: data + tree.HashAreaSize()}, nil
}

// FileSHA256 returns the sha256 and size of a file.
func FileSHA256(path string) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("netstore: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, 0, fmt.Errorf("netstore: %w", err)
	}
	return h.Sum(nil), n, nil
}

// BaseModules are loaded by name for every store URL scheme that needs
// them: NBD and dm-verity (built-in ones are skipped).
var BaseModules = []string{"nbd", "dm_verity"}

// NICModules returns the network drivers of a modules tree: every module
// under kernel/drivers/net/ethernet plus the paravirtual NICs and the
// virtio PCI transport. Stage 0 loads those that match the hardware.
func NICModules(ix *kmod.Index) []string {
	extra := map[string]bool{"virtio_net": true, "virtio_pci": true, "xen_netfront": true, "hv_netvsc": true}
	var out []string
	for _, n := range ix.Modules() {
		f, _ := ix.File(n)
		if extra[n] || strings.HasPrefix(f, "kernel/drivers/net/ethernet/") {
			out = append(out, n)
		}
	}
	return out
}

// OpenModules reads the index of a modules directory
// (<kernel-modules>/lib/modules/<version>).
func OpenModules(dir string) (*kmod.Index, error) {
	read := func(n string, need bool) (io.Reader, error) {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			if !need && errors.Is(err, os.ErrNotExist) {
				return nil, nil
			}
			return nil, fmt.Errorf("netstore: kernel modules: %w", err)
		}
		return bytes.NewReader(b), nil
	}
	dep, err := read("modules.dep", true)
	if err != nil {
		return nil, err
	}
	alias, err := read("modules.alias", false)
	if err != nil {
		return nil, err
	}
	builtin, err := read("modules.builtin", false)
	if err != nil {
		return nil, err
	}
	return kmod.Parse(dep, alias, builtin)
}

// SegmentOptions describe the stage-0 initrd segment.
type SegmentOptions struct {
	// Stage0 is the static stage-0 program.
	Stage0 []byte
	// Config is stage 0's configuration; its KernelVersion and Modules
	// are filled in here.
	Config stage0.Config
	// ModulesDir is the system's <kernel-modules>/lib/modules/<version>.
	ModulesDir string
	// Modules to copy besides BaseModules and the NIC drivers (names).
	Modules []string
	// CA is a PEM bundle of the CAs an https:// server may chain to: put
	// at stage0.CAPath and named in the configuration (required for
	// https://).
	CA []byte
	// MTime of the entries (zero: initrd.DefaultMTime).
	MTime time.Time
}

// SegmentResult says what went into the segment.
type SegmentResult struct {
	// Modules are the copied module files, relative to the modules
	// directory, sorted.
	Modules []string
	// Size of the segment written (gzip compressed).
	Size int64
}

// WriteSegment writes the stage-0 segment to w: one gzip-compressed newc
// archive, to be appended to the system's initrd (at a 4-byte aligned
// offset).
func WriteSegment(w io.Writer, o SegmentOptions) (*SegmentResult, error) {
	ix, err := OpenModules(o.ModulesDir)
	if err != nil {
		return nil, err
	}
	version := filepath.Base(filepath.Clean(o.ModulesDir))
	load := append(slices.Clone(BaseModules), o.Modules...)
	want := append(slices.Clone(load), NICModules(ix)...)
	files, err := ix.Closure(want...)
	if err != nil {
		return nil, fmt.Errorf("netstore: %w", err)
	}
	cfg := o.Config
	cfg.KernelVersion = version
	cfg.Modules = load
	if o.CA != nil {
		cfg.CAFile = stage0.CAPath
	}
	conf, err := cfg.Marshal()
	if err != nil {
		return nil, err
	}
	a, err := initrd.NewArchive(o.MTime)
	if err != nil {
		return nil, err
	}
	modDir := strings.TrimPrefix(stage0.ModulesDir, "/") + "/" + version
	if err := a.AddBytes(strings.TrimPrefix(stage0.BinaryPath, "/"), 0o755, o.Stage0); err != nil {
		return nil, err
	}
	if err := a.AddBytes(strings.TrimPrefix(stage0.ConfigPath, "/"), 0o444, conf); err != nil {
		return nil, err
	}
	if o.CA != nil {
		if err := a.AddBytes(strings.TrimPrefix(stage0.CAPath, "/"), 0o444, o.CA); err != nil {
			return nil, err
		}
	}
	var names []string
	for _, f := range files {
		src := filepath.Join(o.ModulesDir, f)
		st, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("netstore: kernel module: %w", err)
		}
		if err := a.AddFile(modDir+"/"+f, 0o444, st.Size(), func() (io.ReadCloser, error) { return os.Open(src) }); err != nil {
			return nil, err
		}
		names = append(names, kmod.Name(f))
	}
	sort.Strings(names)
	var builtin bytes.Buffer
	if b, err := os.ReadFile(filepath.Join(o.ModulesDir, "modules.builtin")); err == nil {
		builtin.Write(b)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("netstore: %w", err)
	}
	for name, data := range map[string][]byte{
		"modules.dep":     []byte(ix.FilterDep(files)),
		"modules.alias":   []byte(ix.FilterAlias(names)),
		"modules.builtin": builtin.Bytes(),
	} {
		if err := a.AddBytes(modDir+"/"+name, 0o444, data); err != nil {
			return nil, err
		}
	}
	cw := &counter{w: w}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := a.WriteTo(zw); err != nil {
		return nil, fmt.Errorf("netstore: writing the segment: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("netstore: writing the segment: %w", err)
	}
	return &SegmentResult{Modules: files, Size: cw.n}, nil
}

type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
