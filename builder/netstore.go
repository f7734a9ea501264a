package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nbimg/nbimg/initrd"
	"github.com/nbimg/nbimg/internal/ioctx"
	"github.com/nbimg/nbimg/netstore"
	"github.com/nbimg/nbimg/nixstore"
	"github.com/nbimg/nbimg/stage0"
	"github.com/nbimg/nbimg/stage0/fetch"
)

// StoreImageName is the store image's file name in a boot tree whose store
// is served over the network.
const StoreImageName = "nix-store.squashfs"

// NetStore makes a boot tree whose store image is served over the network
// (nbd:// or http(s)://) instead of riding in the initrd: the image is
// written beside the kernel with its dm-verity hash area appended, and the
// initrd is the base initrds plus the stage-0 segment (see package
// netstore).
type NetStore struct {
	URL string
	// Stage0 is the static stage-0 program for the system's architecture
	// (netstore.Stage0 finds or builds it).
	Stage0 []byte
	// GiveUpSeconds is how long stage 0 keeps trying the server (0: its
	// default; negative: forever).
	GiveUpSeconds int
	// CA is the PEM bundle of the only CAs stage 0 trusts for an https://
	// server, and CASource says where it came from. Nil: the system's own
	// bundle (SystemCABundle under the toplevel) if it has one; https://
	// without either is refused.
	CA       []byte
	CASource string
}

// SystemCABundle is where a NixOS toplevel keeps its CA bundle.
const SystemCABundle = "etc/ssl/certs/ca-certificates.crt"

// ErrNoCA: an https:// store URL with no CA bundle to pin.
var ErrNoCA = errors.New("an https:// store URL needs a CA bundle for stage 0 to verify the server: give --store-ca FILE (PEM)")

// ResolveCA returns the CA bundle of an https:// store URL for the
// system c and where it came from: n.CA as given, else the system's own
// bundle (SystemCABundle under the toplevel). It fails with ErrNoCA when
// there is neither, and when the bundle holds anything but certificates.
// Other schemes need none (nil). n is not changed: a tree of several
// systems resolves each system's own bundle.
func (n *NetStore) ResolveCA(c *nixstore.Closure) (ca []byte, source string, err error) {
	u, err := stage0.ParseURL(n.URL)
	if err != nil {
		return nil, "", err
	}
	if u.Scheme != "https" {
		return nil, "", nil
	}
	ca, source = n.CA, n.CASource
	if ca == nil {
		if c.Toplevel == nil {
			return nil, "", ErrNoCA
		}
		p, err := c.Resolve(c.Toplevel.Path + "/" + SystemCABundle)
		if err != nil {
			return nil, "", fmt.Errorf("%w (the system has no /%s)", ErrNoCA, SystemCABundle)
		}
		if ca, err = os.ReadFile(c.HostPath(p)); err != nil {
			return nil, "", fmt.Errorf("the system's CA bundle: %w", err)
		}
		source = p
	}
	if _, err := fetch.ParseCAs(ca); err != nil {
		return nil, "", fmt.Errorf("CA bundle %s: %w", source, err)
	}
	return ca, source, nil
}

// Check validates the URL.
func (n *NetStore) Check() error {
	_, err := stage0.ParseURL(n.URL)
	return err
}

// ManifestStore describes the served store image.
type ManifestStore struct {
	URL      string `json:"url"`
	File     string `json:"file"`   // its name in the output directory
	Size     int64  `json:"size"`   // bytes, hash area included
	SHA256   string `json:"sha256"` // of the whole file
	DataSize int64  `json:"data_size"`
	// Verity: the hash area starts at DataSize (veritysetup's
	// --hash-offset); Root is the root hash.
	VerityRoot string `json:"verity_root_hash"`
	VeritySalt string `json:"verity_salt"`
	// InitrdSegment is the size of the stage-0 segment in the initrd.
	InitrdSegment int64 `json:"initrd_segment_size"`
	// Modules are the kernel modules copied into the segment.
	Modules []string `json:"modules"`
	// CA is where the CA bundle pinned for https:// came from, CASHA256
	// its hash (both empty for other schemes).
	CA       string `json:"ca,omitempty"`
	CASHA256 string `json:"ca_sha256,omitempty"`
}

// writeNetStore writes tmp/nix-store.squashfs and the initrd file f (the
// base initrds, then the stage-0 segment) for o.NetStore.
func writeNetStore(ctx context.Context, tmp string, f *os.File, c *nixstore.Closure, o BootOptions) (*InitrdResult, *ManifestStore, error) {
	ns := o.NetStore
	if err := ns.Check(); err != nil {
		return nil, nil, err
	}
	top := c.Toplevel
	if top.KernelModules == "" {
		return nil, nil, fmt.Errorf("--store-url: the system %s has no kernel-modules (stage 0 loads the NIC, nbd and dm-verity drivers from it)", top.Path)
	}
	mods, err := filepath.Glob(filepath.Join(c.HostPath(top.KernelModules), "lib", "modules", "*"))
	if err != nil || len(mods) != 1 {
		return nil, nil, fmt.Errorf("--store-url: %s/lib/modules should hold one kernel version (found %d)", top.KernelModules, len(mods))
	}
	if o.Image == nil {
		return nil, nil, errors.New("builder: --store-url needs an image writer")
	}
	ca, caSource, err := ns.ResolveCA(c)
	if err != nil {
		return nil, nil, err
	}
	logf := logOrDiscard(o.Logf)

	// The image, then its hash area.
	imgPath := filepath.Join(tmp, StoreImageName)
	img, err := os.OpenFile(imgPath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, nil, err
	}
	defer img.Close()
	info, err := o.Image.WriteImage(ctx, img, c)
	if err != nil {
		return nil, nil, err
	}
	v, err := netstore.AppendVerity(img, nil)
	if err != nil {
		return nil, nil, err
	}
	if err := img.Close(); err != nil {
		return nil, nil, err
	}
	sum, size, err := netstore.FileSHA256(imgPath)
	if err != nil {
		return nil, nil, err
	}
	logf("store image %s: %d bytes, dm-verity root %s", StoreImageName, size, v.Tree.RootHex())

	// The initrd: bases unchanged, each 4-byte aligned, then the segment.
	bases, warnings, err := openBases(o.Bases, logf)
	if err != nil {
		return nil, nil, err
	}
	defer closeBases(bases)
	res := &InitrdResult{Image: info, Initrd: &initrd.Result{SegmentOffset: -1}, Warnings: warnings}
	var off int64
	for _, b := range bases {
		n, err := io.Copy(f, ioctx.Reader(ctx, b.f))
		if err != nil {
			return nil, nil, fmt.Errorf("base initrd %s: %w", b.path, err)
		}
		res.Initrd.Bases = append(res.Initrd.Bases, n)
		off += n
		if pad := (4 - off%4) % 4; pad > 0 {
			if _, err := f.Write(make([]byte, pad)); err != nil {
				return nil, nil, err
			}
			off += pad
		}
	}
	p := v.Params()
	cfg := stage0.Config{
		Version: stage0.ConfigVersion, URL: ns.URL, Size: size, SHA256: hex.EncodeToString(sum),
		Verity: &p, GiveUpSeconds: ns.GiveUpSeconds,
	}
	seg, err := netstore.WriteSegment(f, netstore.SegmentOptions{
		Stage0: ns.Stage0, Config: cfg, ModulesDir: mods[0], MTime: o.Initrd.MTime, CA: ca,
	})
	if err != nil {
		return nil, nil, err
	}
	res.Initrd.SegmentOffset = off
	res.Initrd.SegmentSize = seg.Size
	res.Initrd.Size = off + seg.Size
	logf("stage-0 segment: %d bytes, %d kernel modules", seg.Size, len(seg.Modules))
	ms := &ManifestStore{
		URL: ns.URL, File: StoreImageName, Size: size, SHA256: cfg.SHA256, DataSize: v.DataSize,
		VerityRoot: p.RootHex, VeritySalt: p.SaltHex, InitrdSegment: seg.Size, Modules: seg.Modules,
	}
	if ca != nil {
		h := sha256.Sum256(ca)
		ms.CA, ms.CASHA256 = caSource, hex.EncodeToString(h[:])
		logf("https: stage 0 trusts only the CAs of %s", caSource)
	}
	return res, ms, nil
}

// netStoreCmdline is o.Cmdline with rdinit= naming stage 0 first when the
// store is served over the network.
func netStoreCmdline(o BootOptions) string {
	if o.NetStore == nil {
		return o.Cmdline
	}
	if o.Cmdline == "" {
		return "rdinit=" + stage0.BinaryPath
	}
	return "rdinit=" + stage0.BinaryPath + " " + o.Cmdline
}
