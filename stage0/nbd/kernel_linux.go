package nbd

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// The nbd driver's ioctls (linux/nbd.h: _IO(0xab, n)).
const (
	ioctlSetSock       = 0xab00
	ioctlSetBlksize    = 0xab01
	ioctlDoIt          = 0xab03
	ioctlClearSock     = 0xab04
	ioctlSetSizeBlocks = 0xab07
	ioctlSetTimeout    = 0xab09
	ioctlSetFlags      = 0xab0a
)

// BlockSize is the device block size stage 0 sets.
const BlockSize = 4096

// Serve configures dev (e.g. /dev/nbd0) with the negotiated connection
// sock and export ex, then runs NBD_DO_IT, which returns only when the
// connection ends. Run it in a process of its own: the kernel serves the
// device as long as that call lasts.
func Serve(dev string, sock *os.File, ex Export) error {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("nbd: %w", err)
	}
	defer f.Close()
	fd := int(f.Fd())
	if ex.Size%BlockSize != 0 {
		return fmt.Errorf("nbd: export size %d is not a multiple of %d", ex.Size, BlockSize)
	}
	steps := []struct {
		name string
		req  uint
		arg  int
	}{
		{"NBD_CLEAR_SOCK", ioctlClearSock, 0},
		{"NBD_SET_BLKSIZE", ioctlSetBlksize, BlockSize},
		{"NBD_SET_SIZE_BLOCKS", ioctlSetSizeBlocks, int(ex.Size / BlockSize)},
		{"NBD_SET_FLAGS", ioctlSetFlags, int(ex.Flags)},
		{"NBD_SET_TIMEOUT", ioctlSetTimeout, 60},
		{"NBD_SET_SOCK", ioctlSetSock, int(sock.Fd())},
	}
	for _, s := range steps {
		if err := unix.IoctlSetInt(fd, s.req, s.arg); err != nil {
			return fmt.Errorf("nbd: %s on %s: %w", s.name, dev, err)
		}
	}
	if err := unix.IoctlSetInt(fd, ioctlDoIt, 0); err != nil {
		return fmt.Errorf("nbd: %s: connection ended: %w", dev, err)
	}
	return nil
}

// Connected reports whether the kernel serves dev (its sysfs pid file
// exists while NBD_DO_IT runs).
func Connected(dev string) bool {
	name := dev[strings.LastIndexByte(dev, '/')+1:]
	_, err := os.Stat("/sys/block/" + name + "/pid")
	return err == nil
}
