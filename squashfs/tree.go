package squashfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Type is the kind of a Node.
type Type uint8

// Node types.
const (
	TypeDir Type = iota + 1
	TypeFile
	TypeSymlink
	TypeBlockDev
	TypeCharDev
	TypeFifo
	TypeSocket
)

func (t Type) String() string {
	switch t {
	case TypeDir:
		return "directory"
	case TypeFile:
		return "file"
	case TypeSymlink:
		return "symlink"
	case TypeBlockDev:
		return "block device"
	case TypeCharDev:
		return "character device"
	case TypeFifo:
		return "fifo"
	case TypeSocket:
		return "socket"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// MaxNameLen is the longest entry name SquashFS stores.
const MaxNameLen = 255

// LinkID identifies a host inode: nodes with the same non-zero LinkID are
// hard links to one file and become one inode (unless Options.NoHardlinks).
type LinkID struct{ Dev, Ino uint64 }

// Node is one entry of a Tree.
type Node struct {
	Name     string // entry name in its parent; ignored for the root
	Type     Type
	Perm     uint16 // permission bits including setuid, setgid and sticky (07777)
	UID, GID uint32
	Mtime    int64 // seconds since the epoch; SquashFS stores 32 bits

	// Regular files: Size bytes come from Content when it is not nil,
	// otherwise from the host file HostPath.
	Size     int64
	Content  []byte
	HostPath string
	// Holes says the host file is stored sparse: only then does an image
	// report the all-zero blocks it skips as holes, as mksquashfs does.
	Holes bool

	Target       string // symlink target
	Major, Minor uint32 // device numbers
	Link         LinkID // hard-link identity; zero for none

	// Xattrs says the host path has extended attributes, which the image
	// does not carry (see Options.Warn).
	Xattrs bool

	// Unit, when not empty, makes this node and everything below it a unit
	// of the data area: its data blocks and the fragment blocks holding its
	// files' tails are written together and hold nothing from outside it,
	// so their bytes depend on the unit's contents alone. Unit names those
	// contents (a Nix store path's narHash, for one): with Options.Cache,
	// units whose compressed data is in the cache are copied from it
	// instead of being read and compressed. Unit is ignored on the root and
	// inside another unit. The image is the same with or without a cache.
	Unit string

	Children []*Node // directory entries, in any order
}

// Tree is the input of a SquashFS image: a root directory.
type Tree struct {
	Root *Node
}

// NewTree returns a tree with an empty root directory with mode 0755, owned
// by root, with mtime 0. Set Root's fields to change them.
func NewTree() *Tree {
	return &Tree{Root: &Node{Type: TypeDir, Perm: 0o755}}
}

// Add appends child to the directory n, failing if n is not a directory
// or the name cannot be stored. Two entries with one name are reported by
// NewPlan (checking here would make building a large directory quadratic).
func (n *Node) Add(child *Node) error {
	if n.Type != TypeDir {
		return fmt.Errorf("squashfs: add %q: parent is a %s, not a directory", child.Name, n.Type)
	}
	if err := checkName(child.Name); err != nil {
		return err
	}
	n.Children = append(n.Children, child)
	return nil
}

// ErrName is returned (wrapped) for entry names SquashFS cannot store.
var ErrName = errors.New("squashfs: invalid entry name")

func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w %q", ErrName, name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w %q: contains '/' or NUL", ErrName, name)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %q is %d bytes long, the limit is %d", ErrName, name, len(name), MaxNameLen)
	}
	return nil
}

// HostNode reads the host path p (not following a final symlink) into a
// node named name: a directory with everything below it, or a single file,
// symlink, device, FIFO or socket. File contents are not read; they are
// read from their host paths when the image is written.
func HostNode(ctx context.Context, name, p string) (*Node, error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	n, err := hostNode(p)
	if err != nil {
		return nil, err
	}
	n.Name = name
	if n.Type == TypeDir {
		if err := readHostDir(ctx, n, p); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// DirTree builds a tree the way "mksquashfs DIR... OUT" does: with one
// directory, its contents are at the root and the root takes its owner,
// mode and mtime; with several paths (or one that is not a directory), each
// is placed at the root under its base name, and the root is a directory
// with mode 0777 owned by the current user, with mtime 0 (set Root.Mtime).
// Two paths with the same base name are an error.
func DirTree(ctx context.Context, paths ...string) (*Tree, error) {
	if len(paths) == 0 {
		return nil, errors.New("squashfs: no source paths")
	}
	if len(paths) == 1 {
		st, err := os.Lstat(paths[0])
		if err != nil {
			return nil, fmt.Errorf("squashfs: %w", err)
		}
		if st.IsDir() {
			n, err := hostNode(paths[0])
			if err != nil {
				return nil, err
			}
			if err := readHostDir(ctx, n, paths[0]); err != nil {
				return nil, err
			}
			return &Tree{Root: n}, nil
		}
	}
	t := NewTree()
	t.Root.Perm = 0o777
	t.Root.UID, t.Root.GID = uint32(os.Getuid()), uint32(os.Getgid())
	seen := map[string]string{}
	for _, p := range paths {
		name := filepath.Base(filepath.Clean(p))
		if prev, ok := seen[name]; ok {
			return nil, fmt.Errorf("squashfs: %s and %s would both be /%s: %w", prev, p, name, fs.ErrExist)
		}
		seen[name] = p
		n, err := HostNode(ctx, name, p)
		if err != nil {
			return nil, err
		}
		if err := t.Root.Add(n); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return t, nil
}

func readHostDir(ctx context.Context, dir *Node, p string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("squashfs: %w", err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("squashfs: read directory %s: %w", p, err)
	}
	dir.Children = make([]*Node, 0, len(names))
	for _, name := range names {
		cp := filepath.Join(p, name)
		if err := checkName(name); err != nil {
			return fmt.Errorf("%s: %w", cp, err)
		}
		n, err := hostNode(cp)
		if err != nil {
			return err
		}
		n.Name = name
		if n.Type == TypeDir {
			if err := readHostDir(ctx, n, cp); err != nil {
				return err
			}
		}
		dir.Children = append(dir.Children, n)
	}
	return nil
}

// hostNode describes the host path p without reading directories.
func hostNode(p string) (*Node, error) {
	st, err := os.Lstat(p)
	if err != nil {
		return nil, fmt.Errorf("squashfs: %w", err)
	}
	n := &Node{
		Perm:  uint16(st.Mode().Perm()),
		Mtime: st.ModTime().Unix(),
	}
	m := st.Mode()
	if m&fs.ModeSetuid != 0 {
		n.Perm |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		n.Perm |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		n.Perm |= 0o1000
	}
	sys := statSys(st)
	n.UID, n.GID = sys.uid, sys.gid
	switch m.Type() {
	case fs.ModeDir:
		n.Type = TypeDir
	case 0:
		n.Type, n.Size, n.HostPath = TypeFile, st.Size(), p
		n.Holes = sys.blocks*512 < n.Size
		// Fail now, before any output, on a file that cannot be read.
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("squashfs: %w", err)
		}
		f.Close()
	case fs.ModeSymlink:
		n.Type = TypeSymlink
		if n.Target, err = os.Readlink(p); err != nil {
			return nil, fmt.Errorf("squashfs: %w", err)
		}
	case fs.ModeDevice:
		n.Type, n.Major, n.Minor = TypeBlockDev, sys.major, sys.minor
	case fs.ModeDevice | fs.ModeCharDevice:
		n.Type, n.Major, n.Minor = TypeCharDev, sys.major, sys.minor
	case fs.ModeNamedPipe:
		n.Type = TypeFifo
	case fs.ModeSocket:
		n.Type = TypeSocket
	default:
		return nil, fmt.Errorf("squashfs: %s: unsupported file type %v", p, m.Type())
	}
	n.Xattrs = hasXattrs(p)
	if n.Type != TypeDir && sys.nlink > 1 {
		n.Link = LinkID{Dev: sys.dev, Ino: sys.ino}
	}
	return n, nil
}

// NewestMtime returns the latest mtime in the tree (0 for none), the
// default superblock time.
func (t *Tree) NewestMtime() int64 {
	var walk func(n *Node) int64
	walk = func(n *Node) int64 {
		m := max(n.Mtime, 0)
		for _, c := range n.Children {
			m = max(m, walk(c))
		}
		return m
	}
	return walk(t.Root)
}
