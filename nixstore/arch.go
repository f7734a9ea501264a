package nixstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Arch is a machine architecture a NixOS system is built for.
type Arch string

// The architectures nbimg writes boot files for.
const (
	ArchX86_64  Arch = "x86_64"
	ArchAArch64 Arch = "aarch64"
)

// ErrArch is wrapped by every error about a system's architecture.
var ErrArch = errors.New("nixstore: architecture")

// ParseSystem returns the architecture of a Nix system name as a NixOS
// toplevel's `system` file holds it: x86_64-linux or aarch64-linux.
func ParseSystem(system string) (Arch, error) {
	switch strings.TrimSpace(system) {
	case "x86_64-linux":
		return ArchX86_64, nil
	case "aarch64-linux":
		return ArchAArch64, nil
	}
	return "", fmt.Errorf("%w: system %q is not supported (supported: x86_64-linux, aarch64-linux)", ErrArch, system)
}

// System returns the Nix system name: x86_64-linux or aarch64-linux.
func (a Arch) System() string { return string(a) + "-linux" }

// KernelFile returns the name nixpkgs gives the architecture's kernel
// image (its kernelFile): bzImage on x86_64, Image on aarch64.
func (a Arch) KernelFile() string {
	if a == ArchAArch64 {
		return "Image"
	}
	return "bzImage"
}

// Kernel header facts: the x86 boot protocol's setup header carries
// "HdrS" at offset 0x202 of a bzImage; the arm64 boot protocol's Image
// header carries "ARM\x64" at offset 56.
const (
	x86MagicOffset   = 0x202
	arm64MagicOffset = 56
)

var (
	x86Magic   = []byte("HdrS")
	arm64Magic = []byte("ARM\x64")
)

// KernelHeaderSize is how many bytes of a kernel KernelArch reads.
const KernelHeaderSize = x86MagicOffset + 4

// KernelArch returns the architecture a kernel image's own header names,
// from its first KernelHeaderSize bytes (fewer when the file is shorter):
// an x86 bzImage or an arm64 Image. ok is false for anything else (a
// compressed or unknown image), which says nothing about its architecture.
func KernelArch(header []byte) (arch Arch, ok bool) {
	has := func(off int, magic []byte) bool {
		return len(header) >= off+len(magic) && bytes.Equal(header[off:off+len(magic)], magic)
	}
	switch {
	case has(arm64MagicOffset, arm64Magic):
		return ArchAArch64, true
	case has(x86MagicOffset, x86Magic):
		return ArchX86_64, true
	}
	return "", false
}

// readKernelHeader reads the first KernelHeaderSize bytes of a kernel.
func readKernelHeader(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, KernelHeaderSize)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, err
	}
	return buf[:n], nil
}

// DetectArch decides a system's architecture from its `system` file's
// content (empty when the toplevel has none) and its kernel's header
// (see KernelArch). The `system` file decides when present; a kernel
// header that names another architecture is an error. Without a `system`
// file the kernel header decides, and a kernel without a known header is
// taken as x86_64 (what nbimg assumed before it read architectures).
func DetectArch(system string, kernelHeader []byte) (Arch, error) {
	karch, kok := KernelArch(kernelHeader)
	if strings.TrimSpace(system) == "" {
		if kok {
			return karch, nil
		}
		return ArchX86_64, nil
	}
	arch, err := ParseSystem(system)
	if err != nil {
		return "", err
	}
	if kok && karch != arch {
		return "", fmt.Errorf("%w: the system is %s but its kernel is an %s image (%s): the toplevel is inconsistent",
			ErrArch, arch.System(), karch, kernelKind(karch))
	}
	return arch, nil
}

func kernelKind(a Arch) string {
	if a == ArchAArch64 {
		return `arm64 Image header "ARM\x64" at offset 56`
	}
	return `x86 bzImage header "HdrS" at offset 0x202`
}

// CheckKernelFile returns an error wrapping ErrArch when the kernel image
// at path (a host path) has a header naming another architecture than
// arch, as when a kernel given on the command line replaces the system's.
func CheckKernelFile(arch Arch, path string) error {
	hdr, err := readKernelHeader(path)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	if k, ok := KernelArch(hdr); ok && k != arch {
		return fmt.Errorf("%w: the system is %s but the kernel %s is an %s image (%s)",
			ErrArch, arch.System(), path, k, kernelKind(k))
	}
	return nil
}
