package builder

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// ManifestVersion is the version of the manifest.json layout. Fields are
// only added within a version; renaming or removing one bumps it.
const ManifestVersion = 1

// Manifest describes one build: what went in, with which settings, and
// each output file with its size and sha256. It is written as
// manifest.json next to the outputs. It is a function of the input, so
// rebuilding gives the same bytes, unless Timings were asked for.
type Manifest struct {
	ManifestVersion int              `json:"manifest_version"`
	Tool            string           `json:"tool"`    // "nbimg VERSION"
	Command         string           `json:"command"` // e.g. "netboot"
	Inputs          ManifestInputs   `json:"inputs"`
	Settings        ManifestSettings `json:"settings"`
	Outputs         []ManifestOutput `json:"outputs"`           // sorted by name
	Timings         *ManifestTimings `json:"timings,omitempty"` // only when asked for
	// Entries describe each system of a command that writes several (pxe:
	// one per menu entry, the first being Inputs' system).
	Entries []ManifestEntry `json:"entries,omitempty"`
	// Clients says which boot file each kind of PXE client gets (pxe).
	Clients []ManifestClient `json:"clients,omitempty"`
	// Pi describes a Raspberry Pi network image (pi-netimage).
	Pi *ManifestPi `json:"pi,omitempty"`
	// Store describes the store image served over the network
	// (--store-url).
	Store *ManifestStore `json:"store,omitempty"`
	// Cache says what the rebuild cache did, when one was used. Like
	// Timings it differs between builds of the same input (a cold and a
	// warm cache); the outputs do not.
	Cache *ManifestCache `json:"cache,omitempty"`
}

// ManifestCache describes the rebuild cache's part in a store image.
type ManifestCache struct {
	StorePaths  int   `json:"store_paths"`  // store paths with file data
	Hits        int   `json:"hits"`         // copied from the cache
	Misses      int   `json:"misses"`       // compressed
	ReusedBytes int64 `json:"reused_bytes"` // file bytes of the hits
	ReadBytes   int64 `json:"read_bytes"`   // compressed bytes copied from the cache
	Stored      int   `json:"stored"`       // entries written
	Damaged     int   `json:"damaged"`      // damaged entries ignored (and rewritten)
}

// manifestCache returns the manifest's cache figures, or nil when no
// cache was used.
func manifestCache(img *ImageInfo) *ManifestCache {
	if img == nil || img.Squashfs == nil || img.Squashfs.CacheHits+img.Squashfs.CacheMisses == 0 {
		return nil
	}
	st := img.Squashfs
	return &ManifestCache{StorePaths: st.Units, Hits: st.CacheHits, Misses: st.CacheMisses,
		ReusedBytes: st.CacheReusedBytes, ReadBytes: st.CacheReadBytes, Stored: st.CacheStored, Damaged: st.CacheDamaged}
}

// ManifestPi describes a Raspberry Pi network image.
type ManifestPi struct {
	Model           string   `json:"model"`              // pi3, pi4 or pi5
	Name            string   `json:"name"`               // the NFS root is os/<name>
	NFSRoot         string   `json:"nfs_root"`           // HOST:/PATH in cmdline.txt
	Kernel          string   `json:"kernel_name"`        // the kernel's file name in boot/
	Firmware        string   `json:"firmware,omitempty"` // where the firmware files came from
	DTBs            string   `json:"dtbs"`               // where the device trees came from
	Serials         []string `json:"serials,omitempty"`  // boot/<serial>/ copies
	RootOwnedByRoot bool     `json:"root_owned_by_root"` // false when not run as root
}

// ManifestEntry is one system of a multi-system output.
type ManifestEntry struct {
	Name       string `json:"name"`           // menu label, e.g. nixos-1
	Title      string `json:"title"`          // menu text
	Dir        string `json:"dir"`            // its files, relative to the output directory
	Toplevel   string `json:"toplevel"`       // store path of the NixOS system
	StorePaths int    `json:"store_paths"`    // paths in its closure
	NarSize    uint64 `json:"nar_size"`       // their total NAR size
	MkfsTime   int64  `json:"mkfs_time"`      // its store image's time, Unix seconds
	Cmdline    string `json:"kernel_cmdline"` // what the menus pass (pxelinux adds initrd=)
	// Arch is the system's architecture (x86_64 or aarch64): which
	// clients can run it.
	Arch string `json:"arch,omitempty"`
	// Kernel, Initrd and UKI are its files, relative to the output
	// directory (UKI only when one was written).
	Kernel string `json:"kernel,omitempty"`
	Initrd string `json:"initrd,omitempty"`
	UKI    string `json:"uki,omitempty"`
	// Store describes its store image when served over the network
	// (--store-url); File is then relative to the output directory.
	Store *ManifestStore `json:"store,omitempty"`
}

// ManifestClient says which file a PXE tree gives one kind of network boot
// client.
type ManifestClient struct {
	Client     string `json:"client"`      // bios, x86_64-efi or aarch64-efi
	ClientArch []int  `json:"client_arch"` // DHCP option 93 values
	Arch       string `json:"arch"`        // the architecture of what it boots
	BootFile   string `json:"boot_file"`   // relative to the output directory
	Entry      string `json:"entry,omitempty"`
}

// ManifestInputs describes the closure and the system.
type ManifestInputs struct {
	Toplevel   string `json:"toplevel,omitempty"`       // store path of the NixOS system
	Label      string `json:"label,omitempty"`          // its name without the hash
	Arch       string `json:"arch,omitempty"`           // its architecture: x86_64 or aarch64
	Kernel     string `json:"kernel,omitempty"`         // the kernel used
	Initrd     string `json:"initrd,omitempty"`         // the base initrd used
	StorePaths int    `json:"store_paths"`              // paths in the closure
	NarSize    uint64 `json:"nar_size"`                 // their total NAR size
	Cmdline    string `json:"kernel_cmdline,omitempty"` // what the boot script passes
}

// ManifestSettings are the options that decide the output bytes.
type ManifestSettings struct {
	Compressor        string `json:"squashfs_compressor"`    // mksquashfs spec
	ZstdEncoder       string `json:"zstd_encoder,omitempty"` // which zstd implementation ran
	BlockSize         int    `json:"squashfs_block_size"`    // bytes
	MkfsTime          int64  `json:"mkfs_time"`              // Unix seconds
	InitrdCompression string `json:"initrd_compression"`     // of the appended segment
	ImageName         string `json:"image_name"`             // path of the store image in the initrd
	// Image describes the store image whatever its format; the squashfs_*
	// keys above stay for compatibility.
	Image *ManifestImage `json:"image,omitempty"`
}

// ManifestImage describes the store image.
type ManifestImage struct {
	Format string `json:"format"` // "squashfs"
	Size   int64  `json:"size"`   // bytes
}

// ManifestOutput is one file written.
type ManifestOutput struct {
	Name   string `json:"name"` // relative to the output directory
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ManifestTimings are wall-clock durations in seconds. They differ between
// two builds of the same input, so a manifest holds them only on request.
type ManifestTimings struct {
	Squashfs float64 `json:"image_seconds,omitempty"`
	Total    float64 `json:"total_seconds"`
}

// recordTimings puts the durations in the manifest when on is set.
func (m *Manifest) recordTimings(on bool, image, total time.Duration) {
	if on {
		m.Timings = &ManifestTimings{Squashfs: seconds(image), Total: seconds(total)}
	}
}

func seconds(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond)) / float64(time.Second)
}

// addOutputs records the size and sha256 of the named files in dir.
func (m *Manifest) addOutputs(dir string, names ...string) error {
	for _, n := range names {
		size, sum, err := fileDigest(filepath.Join(dir, n))
		if err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		m.Outputs = append(m.Outputs, ManifestOutput{Name: n, Size: size, SHA256: sum})
	}
	sort.Slice(m.Outputs, func(i, j int) bool { return m.Outputs[i].Name < m.Outputs[j].Name })
	return nil
}

// write writes the manifest as dir/manifest.json.
func (m *Manifest) write(dir string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, "manifest.json"), append(b, '\n'), 0o644)
}
