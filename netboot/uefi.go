package netboot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// UEFI files in a netboot directory or PXE tree.
const (
	// UKIName is the Unified Kernel Image: kernel, initrd and command line
	// in one EFI executable that UEFI firmware boots directly.
	UKIName = "nixos.efi"
	// IPXEEFIName is iPXE's x86-64 EFI build in a PXE tree's TFTP root;
	// it chains MenuName.
	IPXEEFIName = "ipxe.efi"
)

// DebianIPXEEFI lists where Debian's ipxe package installs its x86-64 EFI
// builds, in the order FindIPXEEFI prefers them: snponly.efi drives the
// NIC through the firmware's own network stack (SNP), which works on
// every UEFI machine with network boot; ipxe.efi carries iPXE's drivers.
var DebianIPXEEFI = []string{"/usr/lib/ipxe/snponly.efi", "/usr/lib/ipxe/ipxe.efi"}

// ErrNoIPXE is wrapped by FindIPXEEFI's errors.
var ErrNoIPXE = errors.New("netboot: iPXE EFI build not found")

// FindIPXEEFI returns the host path of an x86-64 iPXE EFI build: in dir
// (snponly.efi or ipxe.efi, as in iPXE's bin-x86_64-efi/ build directory)
// when dir is not empty, else at Debian's locations.
func FindIPXEEFI(dir string) (string, error) {
	cands := DebianIPXEEFI
	if dir != "" {
		cands = nil
		for _, p := range DebianIPXEEFI {
			cands = append(cands, filepath.Join(dir, filepath.Base(p)))
		}
	}
	for _, p := range cands {
		st, err := os.Stat(p)
		switch {
		case err == nil && st.Mode().IsRegular():
			return p, nil
		case err == nil:
			return "", fmt.Errorf("%w: %s is not a regular file", ErrNoIPXE, p)
		case !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("ipxe: %w", err)
		}
	}
	if dir != "" {
		return "", fmt.Errorf("%w: no snponly.efi or ipxe.efi in --ipxe %s", ErrNoIPXE, dir)
	}
	return "", fmt.Errorf("%w: no %s: install the Debian package ipxe, or pass --ipxe DIR", ErrNoIPXE, strings.Join(cands, " or "))
}
