// Package stage0 is nbimg's early userspace: a small static program that
// runs before a NixOS system's own stage 1 (started by the kernel through
// rdinit=), fetches or attaches the store image over the network, makes
// it appear as /nix-store.squashfs (where NixOS's netboot stage 1 mounts
// it) and then execs the system's /init with the original arguments.
//
// This package holds the configuration and the pure logic (URL parsing,
// retry schedules, kernel command-line overrides); the Linux-only steps
// (mounts, module loading, DHCP, NBD, device-mapper) live in *_linux.go
// files and in the subpackages kmod, dhcp, nbd, dm and fetch.
//
// Two ways to get the store image:
//   - nbd://HOST[:PORT][/EXPORT]: the image (the squashfs with its
//     dm-verity hash area appended) is attached as /dev/nbd0 and mapped
//     through dm-verity with the root hash pinned in the configuration; it
//     is read on demand, so RAM use does not grow with the image.
//   - http:// or https://: the image is downloaded into the initramfs
//     (RAM) and its sha256, pinned in the configuration, is checked before
//     anything uses it.
//
// Faults: stage 0 retries the server with backoff until the give-up time.
// Over NBD it attaches the device through the kernel's netlink interface
// with a dead-connection timeout (the give-up time) and leaves a helper
// process that connects again whenever the kernel reports the connection
// dead: reads wait meanwhile instead of failing. Kernels without that
// interface get the older ioctl attachment, which does not reconnect.
//
// Store URLs may name hosts: stage 0 resolves them through the DHCP
// lease's first DNS server.
//
// Limits: IPv4 only; one NBD connection.
package stage0

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nbimg/nbimg/verity"
)

// Where things are in the initrd segment nbimg adds.
const (
	// ConfigPath is the configuration's path in the initramfs.
	ConfigPath = "/nbimg/stage0.json"
	// BinaryPath is where the stage-0 program is put; rdinit= names it.
	BinaryPath = "/nbimg/stage0"
	// CAPath is where nbimg puts the CA bundle https:// trusts.
	CAPath = "/nbimg/ca.pem"
	// ModulesDir holds the copied kernel modules: ModulesDir/<version>/...
	ModulesDir = "/nbimg/lib/modules"
	// DefaultImagePath is where NixOS's netboot stage 1 looks for the
	// store image.
	DefaultImagePath = "/nix-store.squashfs"
	// DefaultNBDPort is the IANA port of NBD.
	DefaultNBDPort = 10809
	// ConfigVersion is the configuration format this package reads.
	ConfigVersion = 1
)

// Kernel command-line parameters that override the configuration.
const (
	ParamURL    = "nbimg.url"    // another URL for the same image
	ParamGiveUp = "nbimg.giveup" // seconds before giving up
	ParamDebug  = "nbimg.debug"  // more console lines
	// ParamRootHash pins the store image's dm-verity root hash (hex): a
	// signed UKI's command line carries it, and stage 0 stops when the
	// configuration names another.
	ParamRootHash = "nbimg.roothash"
)

// Errors.
var (
	ErrConfig = errors.New("stage0: bad configuration")
	ErrScheme = errors.New("stage0: unsupported store URL scheme (want nbd://, http:// or https://)")
	ErrNoCA   = errors.New("stage0: https:// needs a CA bundle in the initrd to verify the server (build with nbimg --store-ca FILE)")
)

// Config is what nbimg writes to ConfigPath.
type Config struct {
	Version int `json:"version"`
	// URL of the store image: nbd://HOST[:PORT][/EXPORT], http(s)://...
	URL string `json:"url"`
	// Size of the image file in bytes (the squashfs plus, for NBD, the
	// hash area appended to it).
	Size int64 `json:"size"`
	// SHA256 of the whole image file, hex (checked for HTTP).
	SHA256 string `json:"sha256"`
	// Verity parameters of the image (used for NBD).
	Verity *verity.Params `json:"verity,omitempty"`
	// ImagePath is where the image must appear (default
	// /nix-store.squashfs).
	ImagePath string `json:"image_path,omitempty"`
	// Init is the program to exec at the end (default /init).
	Init string `json:"init,omitempty"`
	// KernelVersion names ModulesDir/<version>.
	KernelVersion string `json:"kernel_version"`
	// Modules are loaded by name (with their dependencies) before the
	// network comes up, e.g. nbd and dm_verity; NIC drivers are found by
	// modalias.
	Modules []string `json:"modules,omitempty"`
	// CAFile is the PEM bundle of the only CAs an https:// server's
	// certificate may chain to (CAPath; required for https).
	CAFile string `json:"ca_file,omitempty"`
	// GiveUpSeconds: how long to keep trying the server before giving up
	// (0: the default, 300; negative: forever).
	GiveUpSeconds int `json:"give_up_seconds,omitempty"`
}

// Defaults.
const (
	DefaultGiveUp = 300 * time.Second
	DefaultInit   = "/init"
)

// ParseConfig decodes and validates a configuration.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Marshal encodes the configuration as nbimg writes it (indented JSON
// with a final newline).
func (c *Config) Marshal() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Validate checks the configuration for the mode its URL selects.
func (c *Config) Validate() error {
	if c.Version != ConfigVersion {
		return fmt.Errorf("%w: version %d, this stage 0 reads version %d", ErrConfig, c.Version, ConfigVersion)
	}
	u, err := ParseURL(c.URL)
	if err != nil {
		return err
	}
	if c.Size <= 0 {
		return fmt.Errorf("%w: size %d", ErrConfig, c.Size)
	}
	if c.KernelVersion == "" || strings.ContainsAny(c.KernelVersion, "/\x00") || c.KernelVersion == ".." {
		return fmt.Errorf("%w: kernel_version %q", ErrConfig, c.KernelVersion)
	}
	for _, p := range []string{c.ImagePath, c.Init, c.CAFile} {
		if p != "" && !strings.HasPrefix(p, "/") {
			return fmt.Errorf("%w: path %q is not absolute", ErrConfig, p)
		}
	}
	switch u.Scheme {
	case "nbd":
		if c.Verity == nil {
			return fmt.Errorf("%w: nbd:// needs verity parameters", ErrConfig)
		}
		if err := c.Verity.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if c.Verity.HashOffset < c.Verity.DataBlocksBytes() || c.Verity.HashOffset >= c.Size {
			return fmt.Errorf("%w: hash area at %d outside the image (data %d bytes, image %d)",
				ErrConfig, c.Verity.HashOffset, c.Verity.DataBlocksBytes(), c.Size)
		}
	default:
		if b, err := hex.DecodeString(c.SHA256); err != nil || len(b) != 32 {
			return fmt.Errorf("%w: sha256 %q is not 32 hex bytes", ErrConfig, c.SHA256)
		}
		if u.Scheme == "https" && c.CAFile == "" {
			return fmt.Errorf("%w: %w", ErrConfig, ErrNoCA)
		}
	}
	return nil
}

// ImageTarget returns ImagePath or its default.
func (c *Config) ImageTarget() string {
	if c.ImagePath != "" {
		return c.ImagePath
	}
	return DefaultImagePath
}

// InitPath returns Init or its default.
func (c *Config) InitPath() string {
	if c.Init != "" {
		return c.Init
	}
	return DefaultInit
}

// GiveUp returns how long to keep trying (0: forever).
func (c *Config) GiveUp() time.Duration {
	switch {
	case c.GiveUpSeconds < 0:
		return 0
	case c.GiveUpSeconds == 0:
		return DefaultGiveUp
	}
	return time.Duration(c.GiveUpSeconds) * time.Second
}

// StoreURL is a parsed store URL.
type StoreURL struct {
	Scheme string // nbd, http or https
	// Addr is HOST:PORT for nbd (port defaulted).
	Addr string
	// Export is the NBD export name ("" for the server's default).
	Export string
	// Raw is the URL as given (for HTTP, what to GET).
	Raw string
}

// ParseURL parses and checks a store URL.
func ParseURL(s string) (StoreURL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return StoreURL{}, fmt.Errorf("%w: store URL: %w", ErrConfig, err)
	}
	if u.Host == "" || u.Hostname() == "" {
		return StoreURL{}, fmt.Errorf("%w: store URL %q has no host", ErrConfig, s)
	}
	if u.User != nil {
		return StoreURL{}, fmt.Errorf("%w: store URL %q carries credentials", ErrConfig, s)
	}
	switch u.Scheme {
	case "nbd":
		port := u.Port()
		if port == "" {
			port = strconv.Itoa(DefaultNBDPort)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return StoreURL{}, fmt.Errorf("%w: store URL %q: bad port", ErrConfig, s)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return StoreURL{}, fmt.Errorf("%w: store URL %q: nbd:// takes no query", ErrConfig, s)
		}
		export := strings.TrimPrefix(u.Path, "/")
		if len(export) > 4096 {
			return StoreURL{}, fmt.Errorf("%w: export name longer than 4096 bytes", ErrConfig)
		}
		return StoreURL{Scheme: "nbd", Addr: net.JoinHostPort(u.Hostname(), port), Export: export, Raw: s}, nil
	case "http", "https":
		return StoreURL{Scheme: u.Scheme, Addr: u.Host, Raw: s}, nil
	}
	return StoreURL{}, fmt.Errorf("%w: %q", ErrScheme, s)
}

// Overrides are the nbimg.* parameters of the kernel command line.
type Overrides struct {
	URL    string
	GiveUp *time.Duration
	Debug  bool
	// RootHash is ParamRootHash's value, lowercase hex.
	RootHash string
}

// ParseCmdline reads the nbimg.* parameters of a kernel command line
// (/proc/cmdline). Unknown nbimg.* parameters are reported as an error so
// a typo does not go unnoticed; everything else is ignored.
func ParseCmdline(cmdline string) (Overrides, error) {
	var o Overrides
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case ParamURL:
			if _, err := ParseURL(v); err != nil {
				return o, err
			}
			o.URL = v
		case ParamGiveUp:
			n, err := strconv.Atoi(v)
			if err != nil {
				return o, fmt.Errorf("%w: %s=%q is not a number of seconds", ErrConfig, ParamGiveUp, v)
			}
			d := time.Duration(n) * time.Second
			if n < 0 {
				d = 0
			}
			o.GiveUp = &d
		case ParamDebug:
			o.Debug = true
		case ParamRootHash:
			h, err := hex.DecodeString(v)
			if err != nil || len(h) != 32 {
				return o, fmt.Errorf("%w: %s=%q is not a sha256 root hash in hex", ErrConfig, ParamRootHash, v)
			}
			o.RootHash = hex.EncodeToString(h)
		default:
			if strings.HasPrefix(k, "nbimg.") {
				return o, fmt.Errorf("%w: unknown kernel parameter %s", ErrConfig, k)
			}
		}
	}
	return o, nil
}

// CheckRootHash returns an error when the command line pins a dm-verity
// root hash (o.RootHash) and c's image does not have it.
func (o Overrides) CheckRootHash(c *Config) error {
	if o.RootHash == "" {
		return nil
	}
	if c.Verity == nil {
		return fmt.Errorf("%w: the command line pins the root hash %s but the configuration has no dm-verity parameters", ErrConfig, o.RootHash)
	}
	if !strings.EqualFold(c.Verity.RootHex, o.RootHash) {
		return fmt.Errorf("%w: the command line pins the root hash %s but the initrd's configuration names %s: the UKI or initrd was changed", ErrConfig, o.RootHash, c.Verity.RootHex)
	}
	return nil
}

// Backoff returns the wait before attempt n (0-based): 1 s doubling to at
// most 8 s.
func Backoff(n int) time.Duration {
	d := time.Second
	for i := 0; i < n && d < 8*time.Second; i++ {
		d *= 2
	}
	return min(d, 8*time.Second)
}
