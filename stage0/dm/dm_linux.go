package dm

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ControlPath is the device-mapper control node.
const ControlPath = "/dev/mapper/control"

func ioctl(f *os.File, cmd uint, b []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), uintptr(Request(cmd)), uintptr(unsafe.Pointer(&b[0])))
	if errno != 0 {
		return errno
	}
	return nil
}

// openControl opens /dev/mapper/control, creating the node (misc 10:236)
// when devtmpfs has not.
func openControl() (*os.File, error) {
	f, err := os.OpenFile(ControlPath, os.O_RDWR, 0)
	if err == nil {
		return f, nil
	}
	if err := os.MkdirAll("/dev/mapper", 0o755); err != nil {
		return nil, fmt.Errorf("dm: %w", err)
	}
	if err := unix.Mknod(ControlPath, unix.S_IFCHR|0o600, int(unix.Mkdev(10, 236))); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("dm: creating %s: %w", ControlPath, err)
	}
	f, err = os.OpenFile(ControlPath, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("dm: %w", err)
	}
	return f, nil
}

// Create makes a device named name with one target and activates it. It
// returns the device's major and minor numbers.
func Create(name string, flags uint32, t Target) (major, minor uint32, err error) {
	ctl, err := openControl()
	if err != nil {
		return 0, 0, err
	}
	defer ctl.Close()
	req, err := Header(name, flags)
	if err != nil {
		return 0, 0, err
	}
	if err := ioctl(ctl, cmdDevCreate, req); err != nil {
		return 0, 0, fmt.Errorf("dm: DM_DEV_CREATE %s: %w", name, err)
	}
	dev := Dev(req)
	load, err := TableLoad(name, flags, t)
	if err != nil {
		return 0, 0, err
	}
	if err := ioctl(ctl, cmdTableLoad, load); err != nil {
		remove(ctl, name)
		return 0, 0, fmt.Errorf("dm: DM_TABLE_LOAD %s (%s %s): %w (dmesg says why)", name, t.Type, t.Params, err)
	}
	resume, err := Header(name, flags)
	if err != nil {
		return 0, 0, err
	}
	if err := ioctl(ctl, cmdSuspend, resume); err != nil {
		remove(ctl, name)
		return 0, 0, fmt.Errorf("dm: resuming %s: %w", name, err)
	}
	return unix.Major(dev), unix.Minor(dev), nil
}

func remove(ctl *os.File, name string) {
	if req, err := Header(name, 0); err == nil {
		ioctl(ctl, cmdDevRemove, req) //nolint:errcheck // best effort after a failure
	}
}
