package qemu

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// OVMF (Debian's ovmf package): x86-64 UEFI firmware for QEMU. The
// snakeoil variable store enrols Debian's test key (PkKek-1-snakeoil) and
// turns Secure Boot on; the plain one has no keys.
const (
	OVMFCode         = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars         = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	OVMFCodeSnakeoil = "/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd"
	OVMFVarsSnakeoil = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
)

// OVMF describes the firmware of a UEFI boot.
type OVMF struct {
	// SecureBoot selects the snakeoil firmware, which enforces Secure
	// Boot with Debian's test key.
	SecureBoot bool
	// VarsCopy is a writable copy of the variable store (UEFI writes
	// its boot entries there); see CopyVars.
	VarsCopy string
}

// Code returns the firmware code image o boots.
func (o OVMF) Code() string {
	if o.SecureBoot {
		return OVMFCodeSnakeoil
	}
	return OVMFCode
}

// Vars returns the variable store template o copies.
func (o OVMF) Vars() string {
	if o.SecureBoot {
		return OVMFVarsSnakeoil
	}
	return OVMFVars
}

// Args returns QEMU's arguments for the firmware: a q35 machine with SMM
// (the 4M builds need it to protect the variables) and the two flash
// drives.
func (o OVMF) Args() []string {
	return []string{
		"-machine", "q35,smm=on",
		"-global", "driver=cfi.pflash01,property=secure,value=on",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + o.Code(),
		"-drive", "if=pflash,format=raw,unit=1,file=" + o.VarsCopy,
	}
}

// CopyVars copies o's variable store template to dir and records the
// copy in o.VarsCopy.
func (o *OVMF) CopyVars(dir string) error {
	src, err := os.Open(o.Vars())
	if err != nil {
		return fmt.Errorf("ovmf: %w", err)
	}
	defer src.Close()
	dst := filepath.Join(dir, filepath.Base(o.Vars()))
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("ovmf: %w", err)
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return fmt.Errorf("ovmf: copying the variable store: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("ovmf: %w", err)
	}
	o.VarsCopy = dst
	return nil
}

// ESPBootName is the path UEFI firmware boots from removable media on
// x86-64 when it has no boot entry.
const ESPBootName = "/EFI/BOOT/BOOTX64.EFI"

// ESP writes an EFI system partition image to path: a FAT file system,
// with mkfs.vfat (dosfstools), holding efi as ESPBootName, copied with
// mtools. The image is efi's size plus room for the file system.
func ESP(ctx context.Context, path, efi string) error {
	st, err := os.Stat(efi)
	if err != nil {
		return fmt.Errorf("esp: %w", err)
	}
	kib := st.Size()/1024 + 8192
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("esp: %w", err)
	}
	for _, cmd := range [][]string{
		{"mkfs.vfat", "-C", path, strconv.FormatInt(kib, 10)},
		{"mmd", "-i", path, "::/EFI", "::/EFI/BOOT"},
		{"mcopy", "-i", path, efi, "::" + ESPBootName},
	} {
		out, err := exec.CommandContext(ctx, cmd[0], cmd[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("esp: %s: %w\n%s", cmd[0], err, out)
		}
	}
	return nil
}
