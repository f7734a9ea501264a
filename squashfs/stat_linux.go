package squashfs

import (
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

type sysStat struct {
	uid, gid     uint32
	nlink        uint64
	dev, ino     uint64
	major, minor uint32
	blocks       int64
}

func statSys(st fs.FileInfo) sysStat {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return sysStat{}
	}
	rdev := uint64(s.Rdev)
	return sysStat{
		uid: s.Uid, gid: s.Gid,
		nlink: uint64(s.Nlink),
		dev:   uint64(s.Dev), ino: s.Ino,
		blocks: s.Blocks,
		major:  uint32((rdev>>8)&0xfff | (rdev>>32)&^0xfff),
		minor:  uint32(rdev&0xff | (rdev>>12)&^0xff),
	}
}

// hasXattrs reports whether the host path p (not following a symlink) has
// extended attributes.
func hasXattrs(p string) bool {
	n, err := unix.Llistxattr(p, nil)
	return err == nil && n > 0
}
