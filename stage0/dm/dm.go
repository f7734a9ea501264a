// Package dm creates device-mapper devices through the kernel's ioctl
// interface (/dev/mapper/control), as stage 0 needs for a read-only
// dm-verity device: DM_DEV_CREATE, DM_TABLE_LOAD, then DM_DEV_SUSPEND
// without the suspend flag (which resumes, making the table live).
//
// The request layout (struct dm_ioctl, struct dm_target_spec) is built
// here as bytes, so it is tested without a kernel. Limits: one target per
// table; version 4 of the interface.
package dm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Layout of struct dm_ioctl (linux/dm-ioctl.h).
const (
	ioctlSize    = 312 // sizeof(struct dm_ioctl)
	targetSize   = 40  // sizeof(struct dm_target_spec)
	nameLen      = 128
	uuidLen      = 129
	offDataSize  = 12
	offDataStart = 16
	offTargets   = 20
	offFlags     = 28
	offDev       = 40
	offName      = 48
	offUUID      = offName + nameLen
	bufferSize   = 16 * 1024 // room for replies
)

// Flags.
const (
	FlagReadOnly = 1 << 0
	FlagSuspend  = 1 << 1
)

// Commands (the nr of _IOWR(0xfd, nr, struct dm_ioctl)).
const (
	cmdVersion   = 0
	cmdDevCreate = 3
	cmdDevRemove = 4
	cmdSuspend   = 6
	cmdTableLoad = 9
)

// Request returns the ioctl request number of a command.
func Request(cmd uint) uint {
	const iocReadWrite = 3
	return iocReadWrite<<30 | ioctlSize<<16 | 0xfd<<8 | cmd
}

// Errors.
var ErrName = errors.New("dm: bad device name")

// Target is one line of a table.
type Target struct {
	Start, Length uint64 // in 512-byte sectors
	Type          string // e.g. "verity"
	Params        string
}

// Header builds a dm_ioctl request with no payload.
func Header(name string, flags uint32) ([]byte, error) {
	if name == "" || len(name) >= nameLen || bytes.ContainsAny([]byte(name), "/\x00") {
		return nil, fmt.Errorf("%w: %q", ErrName, name)
	}
	b := make([]byte, bufferSize)
	binary.NativeEndian.PutUint32(b[0:], 4) // interface version 4.0.0
	binary.NativeEndian.PutUint32(b[offDataSize:], bufferSize)
	binary.NativeEndian.PutUint32(b[offDataStart:], ioctlSize)
	binary.NativeEndian.PutUint32(b[offFlags:], flags)
	copy(b[offName:offName+nameLen], name)
	return b, nil
}

// TableLoad builds a DM_TABLE_LOAD request with one target.
func TableLoad(name string, flags uint32, t Target) ([]byte, error) {
	b, err := Header(name, flags)
	if err != nil {
		return nil, err
	}
	if len(t.Type) >= 16 || t.Type == "" {
		return nil, fmt.Errorf("dm: target type %q", t.Type)
	}
	params := append([]byte(t.Params), 0)
	next := (targetSize + len(params) + 7) &^ 7
	if ioctlSize+next > bufferSize {
		return nil, fmt.Errorf("dm: table parameters of %d bytes are too long", len(t.Params))
	}
	s := b[ioctlSize:]
	binary.NativeEndian.PutUint64(s[0:], t.Start)
	binary.NativeEndian.PutUint64(s[8:], t.Length)
	binary.NativeEndian.PutUint32(s[20:], uint32(next))
	copy(s[24:40], t.Type)
	copy(s[targetSize:], params)
	binary.NativeEndian.PutUint32(b[offTargets:], 1)
	binary.NativeEndian.PutUint32(b[offDataSize:], uint32(ioctlSize+next))
	return b[:ioctlSize+next], nil
}

// Dev returns the device number the kernel wrote into a reply (the
// kernel's huge_encode_dev form).
func Dev(reply []byte) uint64 {
	return binary.NativeEndian.Uint64(reply[offDev:])
}
