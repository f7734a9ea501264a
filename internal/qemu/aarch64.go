package qemu

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// aarch64 guests run on QEMU's `virt` machine with a Cortex-A57 (under TCG
// it is several times faster than `-cpu max`) and 1 GiB. Their kernel is
// an arm64 `Image` (QEMU's -kernel loads it, or its gzip form, directly)
// and their serial console is the PL011 UART, ttyAMA0.
const (
	AArch64Binary  = "qemu-system-aarch64"
	AArch64Machine = "virt"
	AArch64CPU     = "cortex-a57"
	AArch64Memory  = 1024 // MiB
	AArch64Console = "ttyAMA0"
	// AArch64NIC is the network device for UEFI network boots: virtio-net
	// without an option ROM (QEMU's ROMs are x86 code), so the firmware's
	// own virtio-net driver and PXE client boot it.
	AArch64NIC = "virtio-net-pci,romfile="
)

// AAVMF, the UEFI firmware for aarch64 guests (Debian qemu-efi-aarch64):
// the code is mapped read-only on the first flash device; the second
// holds the variables and must be a writable copy of the template.
const (
	AAVMFCode = "/usr/share/AAVMF/AAVMF_CODE.fd"
	AAVMFVars = "/usr/share/AAVMF/AAVMF_VARS.fd"
)

// AArch64 returns c made into an aarch64 guest on the virt machine: the
// binary, CPU and memory default to AArch64Binary, AArch64CPU and
// AArch64Memory when c leaves them zero, and the machine type is added.
// A direct boot (c.Kernel) passes the kernel to QEMU as is; its command
// line should name console=ttyAMA0. A network boot (c.TFTPDir) needs
// firmware: use AArch64UEFI.
func AArch64(c Config) Config {
	if c.Binary == "" {
		c.Binary = AArch64Binary
	}
	if c.CPU == "" {
		c.CPU = AArch64CPU
	}
	if c.Memory == 0 {
		c.Memory = AArch64Memory
	}
	// -machine options are merged: this sets the type next to the
	// accelerator that Args puts first.
	c.ExtraArgs = append([]string{"-machine", AArch64Machine}, c.ExtraArgs...)
	return c
}

// AArch64UEFI returns c made into an aarch64 guest that starts in AAVMF
// and network-boots: the firmware's PXE client asks QEMU's DHCP server,
// which announces c.BootFile (an EFI program such as a UKI), and loads it
// from c.TFTPDir over TFTP; or, with c.NetDev instead, asks the DHCP and
// TFTP servers on that network. The firmware's variable store is a copy of
// AAVMFVars written into varsDir (a test's temporary directory).
func AArch64UEFI(c Config, varsDir string) (Config, error) {
	if (c.TFTPDir == "" || c.BootFile == "") && c.NetDev == "" {
		return Config{}, errors.New("qemu: an aarch64 UEFI network boot needs TFTPDir and BootFile, or NetDev")
	}
	vars := filepath.Join(varsDir, "AAVMF_VARS.fd")
	if err := copyFile(vars, AAVMFVars); err != nil {
		return Config{}, fmt.Errorf("qemu: copying the AAVMF variable store: %w", err)
	}
	if c.NIC == "" {
		c.NIC = AArch64NIC
	}
	c.ExtraArgs = append([]string{
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + AAVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
	}, c.ExtraArgs...)
	return AArch64(c), nil
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
