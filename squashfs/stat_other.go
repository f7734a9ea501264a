//go:build !linux

package squashfs

import "io/fs"

type sysStat struct {
	uid, gid     uint32
	nlink        uint64
	dev, ino     uint64
	major, minor uint32
	blocks       int64
}

// statSys knows owners, links and devices only on Linux; elsewhere files
// are owned by root and hard links are not detected.
func statSys(fs.FileInfo) sysStat { return sysStat{} }

func hasXattrs(string) bool { return false }
