package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nbimg/nbimg/cmdline"
	"github.com/nbimg/nbimg/internal/atomicfile"
	"github.com/nbimg/nbimg/internal/ioctx"
	"github.com/nbimg/nbimg/nixstore"
	"github.com/nbimg/nbimg/stage0"
	"github.com/nbimg/nbimg/uki"
)

// UKIOptions say how a Unified Kernel Image is made around a kernel and an
// initrd.
type UKIOptions struct {
	// Stub is the systemd EFI stub; "" finds one (FindStub).
	Stub string
	// OSRelease is the file for .osrel; "" takes the toplevel's
	// etc/os-release, else writes one from its name and version.
	OSRelease string
	// Signer, when set, signs the image for Secure Boot.
	Signer *uki.Signer
	// StoreImage is where UKI writes the store image when the store is
	// served over the network (BootOptions.NetStore); "" puts
	// nix-store.squashfs beside the UKI. Netboot and Pxe write it in
	// their tree instead.
	StoreImage string
}

// UKIResult describes a written UKI.
type UKIResult struct {
	InitrdResult
	Layout *uki.Layout
	Stub   string // the stub used
	// StoreImage is the store image's path when the store is served over
	// the network (InitrdResult.Store describes it), else "".
	StoreImage string
}

// ErrNoStub is wrapped by FindStub's errors.
var ErrNoStub = errors.New("builder: no systemd EFI stub for the UKI")

// stubName returns the file name of systemd's UKI stub for a Nix system
// ("x86_64-linux", "aarch64-linux"; "" is taken as x86-64) and the PE
// machine type it must have.
func stubName(system string) (string, uint16, error) {
	switch strings.SplitN(system, "-", 2)[0] {
	case "", "x86_64":
		return "linuxx64.efi.stub", uki.MachineAMD64, nil
	case "aarch64":
		return "linuxaa64.efi.stub", uki.MachineARM64, nil
	}
	return "", 0, fmt.Errorf("%w: nbimg knows the stubs of x86_64 and aarch64 systems, not %s: pass --stub", ErrNoStub, system)
}

// stubSystem returns the system whose stub c's UKI needs: the toplevel's
// detected architecture (its `system` file, else its kernel's header; see
// nixstore.DetectArch), else its `system` file, else "" (x86-64).
func stubSystem(c *nixstore.Closure) string {
	switch t := c.Toplevel; {
	case t == nil:
		return ""
	case t.Arch != "":
		return t.Arch.System()
	default:
		return t.System
	}
}

// DebianStubDir is where Debian's systemd-boot-efi installs the stubs.
const DebianStubDir = "/usr/lib/systemd/boot/efi"

// FindStub returns the stub for c's system: stub when it is not empty,
// else Debian's (systemd-boot-efi), else the one in the toplevel's systemd.
func FindStub(c *nixstore.Closure, stub string) (string, error) {
	if stub != "" {
		return stub, nil
	}
	system := stubSystem(c)
	name, _, err := stubName(system)
	if err != nil {
		return "", err
	}
	cands := []string{filepath.Join(DebianStubDir, name)}
	if c.Toplevel != nil {
		cands = append(cands, filepath.Join(c.HostPath(c.Toplevel.Path), "systemd/lib/systemd/boot/efi", name))
	}
	for _, p := range cands {
		st, err := os.Stat(p)
		if err == nil && st.Mode().IsRegular() {
			return p, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("stub: %w", err)
		}
	}
	return "", fmt.Errorf("%w: no %s: install the Debian package systemd-boot-efi, or pass --stub FILE", ErrNoStub, strings.Join(cands, " or "))
}

// checkStub parses the stub and checks its machine type against c's
// system.
func checkStub(c *nixstore.Closure, path string, r io.ReaderAt, size int64) error {
	p, err := uki.Parse(r, size)
	if err != nil {
		return fmt.Errorf("stub %s: %w", path, err)
	}
	system := stubSystem(c)
	if _, machine, err := stubName(system); err == nil && p.Machine != machine {
		return fmt.Errorf("%w: %s is an %s stub, the system is %s", ErrNoStub, path, p.MachineName(), system)
	}
	return nil
}

// ValidStub finds the stub for c (FindStub) and checks it before any long
// work: a PE image Write can extend, of c's architecture.
func ValidStub(c *nixstore.Closure, stub string) (string, error) {
	p, err := FindStub(c, stub)
	if err != nil {
		return "", err
	}
	f, size, err := openRegular("stub", p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return p, checkStub(c, p, f, size)
}

// osRelease returns the .osrel contents for c.
func osRelease(c *nixstore.Closure, file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("os-release: %w", err)
		}
		return b, nil
	}
	t := c.Toplevel
	b, err := os.ReadFile(filepath.Join(c.HostPath(t.Path), "etc", "os-release"))
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("os-release: %w", err)
	}
	var s strings.Builder
	s.WriteString("NAME=NixOS\nID=nixos\n")
	if t.Version != "" {
		fmt.Fprintf(&s, "VERSION_ID=%q\n", t.Version)
	}
	fmt.Fprintf(&s, "PRETTY_NAME=%q\n", "NixOS "+MenuTitle(c))
	return []byte(s.String()), nil
}

// kernelRelease returns the kernel's release for .uname: from an x86
// bzImage's header, else the toplevel's only lib/modules directory, else
// "".
func kernelRelease(c *nixstore.Closure, kernel *os.File) string {
	if v := uki.KernelVersion(kernel); v != "" {
		return v
	}
	if m := c.Toplevel.KernelModules; m != "" {
		if ents, err := os.ReadDir(filepath.Join(c.HostPath(m), "lib", "modules")); err == nil && len(ents) == 1 {
			return ents[0].Name()
		}
	}
	return ""
}

// UKICmdline returns the UKI's command line for c: init=, the toplevel's
// kernel-params and extra, as netboot.ipxe passes them but without
// initrd= (the stub hands the kernel its .initrd).
func UKICmdline(c *nixstore.Closure, extra string) (string, error) {
	if c.Toplevel == nil {
		return "", ErrNoToplevel
	}
	return cmdline.Line{
		Init:         c.Toplevel.InitArg(),
		KernelParams: strings.Join(c.Toplevel.KernelParams, " "),
		Extra:        []string{extra},
	}.String()
}

// writeUKI writes the UKI of c to dst from the kernel and initrd files,
// atomically, and returns its layout, the stub used and warnings.
func writeUKI(ctx context.Context, dst string, c *nixstore.Closure, kernelPath, initrdPath, extra string, o UKIOptions) (*uki.Layout, string, []string, error) {
	if c.Toplevel == nil {
		return nil, "", nil, ErrNoToplevel
	}
	line, err := UKICmdline(c, extra)
	if err != nil {
		return nil, "", nil, err
	}
	var lay *uki.Layout
	var stub string
	err = atomicfile.Create(dst, func(f *os.File) error {
		var err error
		lay, stub, err = writeUKITo(ctx, f, c, kernelPath, initrdPath, line, o)
		return err
	})
	if err != nil {
		return nil, "", nil, fmt.Errorf("uki %s: %w", dst, err)
	}
	return lay, stub, ukiWarnings(dst, lay), nil
}

// writeUKITo writes the UKI of c into w with the command line line.
func writeUKITo(ctx context.Context, w io.WriteSeeker, c *nixstore.Closure, kernelPath, initrdPath, line string, o UKIOptions) (*uki.Layout, string, error) {
	stubPath, err := FindStub(c, o.Stub)
	if err != nil {
		return nil, "", err
	}
	osrel, err := osRelease(c, o.OSRelease)
	if err != nil {
		return nil, "", err
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	open := func(what, p string) (*os.File, int64, error) {
		f, size, err := openRegular(what, p)
		if err == nil {
			files = append(files, f)
		}
		return f, size, err
	}
	stub, stubSize, err := open("stub", stubPath)
	if err != nil {
		return nil, "", err
	}
	if err := checkStub(c, stubPath, stub, stubSize); err != nil {
		return nil, "", err
	}
	kernel, kernelSize, err := open("kernel", kernelPath)
	if err != nil {
		return nil, "", err
	}
	initrdFile, initrdSize, err := open("initrd", initrdPath)
	if err != nil {
		return nil, "", err
	}
	secs := []uki.Section{
		{Name: uki.SectionOSRel, Size: int64(len(osrel)), Data: bytes.NewReader(osrel)},
		{Name: uki.SectionCmdline, Size: int64(len(line)), Data: strings.NewReader(line)},
		{Name: uki.SectionInitrd, Size: initrdSize, Data: ioctx.Reader(ctx, initrdFile)},
		{Name: uki.SectionLinux, Size: kernelSize, Data: ioctx.Reader(ctx, kernel)},
	}
	if v := kernelRelease(c, kernel); v != "" {
		secs = append(secs, uki.Section{Name: uki.SectionUname, Size: int64(len(v)), Data: strings.NewReader(v)})
	}
	lay, err := uki.Write(w, uki.Image{Stub: stub, StubSize: stubSize, Sections: secs, Signer: o.Signer})
	if err != nil {
		return nil, "", err
	}
	return lay, stubPath, nil
}

// ukiWarnings returns the warnings about a written UKI named dst.
func ukiWarnings(dst string, lay *uki.Layout) []string {
	if lay.Size <= uki.LargeImage {
		return nil
	}
	return []string{fmt.Sprintf("%s is %d MiB: UEFI firmware reads the whole image into memory before starting it and many fail on images over 1 GiB, and UEFI PXE/TFTP clients often fail on large files; keep the store out of the initrd (nbimg uki --store-url, or a smaller closure) for UEFI boots",
		filepath.Base(dst), lay.Size>>20)}
}

// ukiNetStoreCmdline is netStoreCmdline (rdinit= naming stage 0, then
// o.Cmdline) with, for a store served over NBD, nbimg.roothash= pinning
// the image's dm-verity root hash after rdinit=: a signed UKI's signature
// then covers the hash on its command line too, and stage 0 refuses an
// initrd whose configuration names another.
func ukiNetStoreCmdline(o BootOptions, s *ManifestStore) string {
	if o.NetStore == nil {
		return o.Cmdline
	}
	return withRootHash(netStoreCmdline(o), s)
}

// withRootHash puts nbimg.roothash= after the first parameter of line
// (rdinit= naming stage 0) when s is a store served over NBD with a
// dm-verity root hash; other lines come back unchanged.
func withRootHash(line string, s *ManifestStore) string {
	if s == nil || s.VerityRoot == "" || !strings.HasPrefix(s.URL, "nbd://") {
		return line
	}
	first, rest, _ := strings.Cut(line, " ")
	return strings.TrimSpace(first + " " + stage0.ParamRootHash + "=" + s.VerityRoot + " " + rest)
}

// UKI writes a Unified Kernel Image of c to file: the stub, c's os-release,
// the command line (init=, kernel-params, o.Cmdline), the kernel release,
// the initrd (the base initrds followed by the store image, as Netboot
// writes it) and the kernel (o.Kernel or the toplevel's), signed when
// u.Signer is set. The initrd is built in a temporary file beside file;
// file is replaced only when everything succeeded.
//
// With o.NetStore the store is served over the network instead: the
// initrd is the base initrds plus the stage-0 segment, the command line
// starts stage 0 (rdinit=) and, for nbd://, pins the image's dm-verity
// root hash (nbimg.roothash=), and the store image (with its hash area) is
// written to u.StoreImage (default: nix-store.squashfs beside file). The
// image is renamed into place just before the UKI, so a UKI never names
// an image that is not there; the result's Store describes it.
func UKI(ctx context.Context, c *nixstore.Closure, file string, o BootOptions, u UKIOptions) (*UKIResult, error) {
	top := c.Toplevel
	if top == nil {
		return nil, ErrNoToplevel
	}
	if _, err := ValidStub(c, u.Stub); err != nil {
		return nil, err // before the long part
	}
	kernel := o.Kernel
	if kernel == "" {
		kernel = c.HostPath(top.Kernel)
	} else if err := nixstore.CheckKernelFile(top.Arch, kernel); err != nil {
		return nil, err
	}
	if len(o.Bases) == 0 {
		o.Bases = []string{c.HostPath(top.Initrd)}
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	if o.NetStore != nil {
		return ukiNetStore(ctx, c, abs, kernel, o, u)
	}
	if u.StoreImage != "" {
		return nil, errors.New("builder: a store image file is written only when the store is served over the network (--store-url)")
	}
	tmp, err := os.CreateTemp(filepath.Dir(abs), ".nbimg-uki-initrd-*")
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	defer os.Remove(tmp.Name())
	ir, err := WriteInitrd(ctx, tmp, c, o.InitrdOptions)
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("initrd: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	lay, stub, warnings, err := writeUKI(ctx, abs, c, kernel, tmp.Name(), o.Cmdline, u)
	if err != nil {
		return nil, err
	}
	res := &UKIResult{InitrdResult: *ir, Layout: lay, Stub: stub}
	res.Warnings = append(res.Warnings, warnings...)
	return res, nil
}

// ukiNetStore is UKI with o.NetStore: the store image and the UKI, each
// written under a temporary name beside its target; the image is renamed
// first.
func ukiNetStore(ctx context.Context, c *nixstore.Closure, abs, kernel string, o BootOptions, u UKIOptions) (*UKIResult, error) {
	img := u.StoreImage
	if img == "" {
		img = filepath.Join(filepath.Dir(abs), StoreImageName)
	}
	img, err := filepath.Abs(img)
	if err != nil {
		return nil, err
	}
	if img == abs {
		return nil, fmt.Errorf("builder: the store image and the UKI are both %s", abs)
	}
	res := &UKIResult{StoreImage: img}
	err = atomicfile.Create(abs, func(ukiFile *os.File) error {
		return atomicfile.CreateVia(img, func(tmp string) (string, error) {
			initrdPath := filepath.Join(tmp, "initrd")
			f, err := os.OpenFile(initrdPath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return "", fmt.Errorf("initrd: %w", err)
			}
			ir, store, err := writeNetStore(ctx, tmp, f, c, o)
			if cerr := f.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("initrd: %w", cerr)
			}
			if err != nil {
				return "", err
			}
			ir.Store = store
			line, err := UKICmdline(c, ukiNetStoreCmdline(o, store))
			if err != nil {
				return "", err
			}
			lay, stub, err := writeUKITo(ctx, ukiFile, c, kernel, initrdPath, line, u)
			if err != nil {
				return "", fmt.Errorf("uki %s: %w", abs, err)
			}
			res.InitrdResult, res.Layout, res.Stub = *ir, lay, stub
			return filepath.Join(tmp, StoreImageName), nil
		})
	})
	if err != nil {
		return nil, err
	}
	res.Warnings = append(res.Warnings, ukiWarnings(abs, res.Layout)...)
	return res, nil
}
