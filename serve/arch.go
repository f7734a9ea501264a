package serve

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"path"
	"strings"
)

// Architectures as nbimg's manifest.json names them (inputs.arch).
const (
	ArchX86   = "x86_64"
	ArchArm64 = "aarch64"
)

// UKINames are the file names nbimg gives a Unified Kernel Image whatever
// the system's architecture (netboot --uki, pxe --uefi uki, uki). Such a
// file is offered only to clients of its own architecture: see fileArch.
var UKINames = []string{"nixos.efi", "uki.efi"}

func archNamed(name string) bool {
	base := path.Base(name)
	for _, n := range UKINames {
		if base == n {
			return true
		}
	}
	return false
}

// maxManifest bounds the manifest.json read to learn an architecture.
const maxManifest = 4 << 20

// manifestArch is the part of nbimg's manifest.json that says which
// architecture the files of a directory are for: the system's (inputs),
// or, for a command that writes several systems (pxe), each entry's.
type manifestArch struct {
	Inputs struct {
		Arch string `json:"arch"`
	} `json:"inputs"`
	Entries []struct {
		Dir  string `json:"dir"`
		Arch string `json:"arch"`
		UKI  string `json:"uki"`
	} `json:"entries"`
	// Clients (nbimg pxe): the boot file of each kind of client, by
	// the architecture it boots, relative to the manifest's directory.
	Clients []struct {
		Arch     string `json:"arch"`
		BootFile string `json:"boot_file"`
	} `json:"clients"`
}

// fileArch returns the architecture of the EFI program at name (a
// cleaned path) in the first root that has it: from the manifest.json of
// its directory (inputs.arch), else from the manifest.json of an ancestor
// that lists its directory (dir) or the file (uki) as an entry with an
// arch (nbimg pxe), else from the PE
// header's machine type; a file none of these places is taken as x86-64,
// as nbimg takes a system that does not say. The answer names the file
// the TFTP and HTTP servers would send, as they search the roots in the
// same order.
func (r *roots) fileArch(name string) string {
	r.mu.Lock()
	a, ok := r.archs[name]
	r.mu.Unlock()
	if ok {
		return a
	}
	a = r.readFileArch(name)
	if a != "" {
		r.mu.Lock()
		if r.archs == nil {
			r.archs = map[string]string{}
		}
		r.archs[name] = a
		r.mu.Unlock()
	}
	return a
}

// readFileArch is fileArch without the memory.
func (r *roots) readFileArch(name string) string {
	i := r.which(name)
	if i < 0 {
		return ""
	}
	root := r.rs[i]
	dir := path.Dir(name)
	for a := dir; ; a = path.Dir(a) {
		if m, ok := readManifestArch(r, i, path.Join(a, "manifest.json")); ok {
			rel := dir
			switch {
			case dir == a:
				rel = "."
			case a != ".":
				rel = strings.TrimPrefix(dir, a+"/")
			}
			if rel == "." {
				if m.Inputs.Arch != "" {
					return m.Inputs.Arch
				}
				break
			}
			file := path.Join(rel, path.Base(name))
			for _, e := range m.Entries {
				if e.Arch != "" && (path.Clean(e.Dir) == rel || (e.UKI != "" && path.Clean(e.UKI) == file)) {
					return e.Arch
				}
			}
			break
		}
		if a == "." {
			break
		}
	}
	if f, err := root.Open(name); err == nil {
		arch := peArch(f)
		f.Close()
		if arch != "" {
			return arch
		}
	}
	return ArchX86
}

func readManifestArch(r *roots, i int, name string) (*manifestArch, bool) {
	f, err := r.rs[i].Open(name)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	var m manifestArch
	if err := json.NewDecoder(io.LimitReader(f, maxManifest)).Decode(&m); err != nil {
		return nil, false
	}
	return &m, true
}

// PE machine types (the COFF header's Machine field).
const (
	peMachineAMD64 = 0x8664
	peMachineARM64 = 0xaa64
)

// peArch reads the machine type of a PE image: ArchX86, ArchArm64 or ""
// (not a PE image, or another machine).
func peArch(r io.ReaderAt) string {
	var dos [64]byte
	if _, err := r.ReadAt(dos[:], 0); err != nil || dos[0] != 'M' || dos[1] != 'Z' {
		return ""
	}
	off := int64(binary.LittleEndian.Uint32(dos[0x3c:]))
	var hdr [6]byte
	if _, err := r.ReadAt(hdr[:], off); err != nil || string(hdr[:4]) != "PE\x00\x00" {
		return ""
	}
	switch binary.LittleEndian.Uint16(hdr[4:]) {
	case peMachineAMD64:
		return ArchX86
	case peMachineARM64:
		return ArchArm64
	}
	return ""
}
