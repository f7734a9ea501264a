package main

import (
	"os"
	"strings"

	"github.com/nbimg/nbimg/builder"
	"github.com/nbimg/nbimg/netstore"
	"github.com/nbimg/nbimg/nixstore"
	"github.com/urfave/cli/v2"
)

// storeURLFlags are the flags that serve the store over the network
// instead of carrying it in the initrd (netboot, kexec-tree).
func storeURLFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "store-url", Usage: "serve the store image from `URL` (nbd://HOST[:PORT][/EXPORT] or http(s)://...) instead of putting it in the initrd; it is written as nix-store.squashfs beside the kernel"},
		&cli.StringFlag{Name: "stage0", Usage: "with --store-url: the static stage-0 program `FILE` (default: $NBIMG_STAGE0, nbimg-stage0 beside nbimg, or built with the Go toolchain)", TakesFile: true},
		&cli.StringFlag{Name: "store-ca", Usage: "with an https:// --store-url: the PEM bundle `FILE` of the only CAs stage 0 trusts for the server (copied into the initrd; default: the system's /etc/ssl/certs/ca-certificates.crt)", TakesFile: true},
		&cli.IntFlag{Name: "store-giveup", Usage: "with --store-url: `SECONDS` stage 0 keeps trying the server before it stops the boot (0: 300; negative: forever)"},
	}
}

// netStoreFromFlags returns the --store-url options, or nil without the
// flag.
func netStoreFromFlags(c *cli.Context, u *ui, cl *nixstore.Closure) (*builder.NetStore, error) {
	url := c.String("store-url")
	if url == "" {
		if c.IsSet("stage0") || c.IsSet("store-giveup") || c.IsSet("store-ca") {
			return nil, usageErrorf("--stage0, --store-ca and --store-giveup need --store-url")
		}
		return nil, nil
	}
	if c.IsSet("compress") {
		return nil, usageErrorf("--compress does not apply with --store-url: the stage-0 segment is always gzip and the image is not in the initrd")
	}
	ns := &builder.NetStore{URL: url, GiveUpSeconds: c.Int("store-giveup")}
	if err := ns.Check(); err != nil {
		return nil, usageErrorf("--store-url: %v", err)
	}
	if f := c.String("store-ca"); f != "" {
		if !strings.HasPrefix(url, "https://") {
			return nil, usageErrorf("--store-ca applies to an https:// --store-url")
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, usageErrorf("--store-ca: %v", err)
		}
		ns.CA, ns.CASource = b, f
	}
	// Early, before any build: the bundle is settled again per system.
	if _, _, err := ns.ResolveCA(cl); err != nil {
		if ns.CA != nil {
			return nil, usageErrorf("--store-ca %s: %v", ns.CASource, err)
		}
		return nil, err
	}
	system := "x86_64-linux"
	if cl.Toplevel != nil && cl.Toplevel.System != "" {
		system = cl.Toplevel.System
	}
	arch, err := netstore.GOARCH(system)
	if err != nil {
		return nil, err
	}
	bin, err := netstore.Stage0(c.Context, netstore.Stage0Options{File: c.String("stage0"), GOARCH: arch, Logf: u.Debugf})
	if err != nil {
		return nil, err
	}
	ns.Stage0 = bin
	return ns, nil
}
