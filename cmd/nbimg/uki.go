package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nbimg/nbimg/builder"
	"github.com/urfave/cli/v2"

	"github.com/nbimg/nbimg/uki"
)

func init() { registerCommand(ukiCommand) }

// ukiFlags are the flags that say how a UKI is made (nbimg uki, nbimg
// netboot --uki).
func ukiFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "stub", Usage: "systemd's EFI stub `FILE` (default: Debian's systemd-boot-efi, then the toplevel's systemd)", TakesFile: true},
		&cli.StringFlag{Name: "sign-key", Usage: "sign for Secure Boot with this PEM private `KEY` (RSA; needs --sign-cert; if encrypted, its passphrase comes from --sign-key-pass-file or $" + signKeyPassEnv + ")", TakesFile: true},
		&cli.StringFlag{Name: "sign-cert", Usage: "PEM `CERT`ificate of --sign-key", TakesFile: true},
		&cli.StringFlag{Name: "sign-key-pass-file", Usage: "read the passphrase of an encrypted --sign-key from the first line of `FILE`", TakesFile: true},
		&cli.StringFlag{Name: "os-release", Usage: "os-release `FILE` for the .osrel section (default: the toplevel's etc/os-release)", TakesFile: true},
	}
}

// ukiOptionsFromFlags reads the flags of ukiFlags.
func ukiOptionsFromFlags(c *cli.Context) (*builder.UKIOptions, error) {
	o := &builder.UKIOptions{Stub: c.String("stub"), OSRelease: c.String("os-release")}
	key, cert := c.String("sign-key"), c.String("sign-cert")
	if (key == "") != (cert == "") {
		return nil, usageErrorf("--sign-key and --sign-cert go together")
	}
	if key == "" {
		if c.IsSet("sign-key-pass-file") {
			return nil, usageErrorf("--sign-key-pass-file needs --sign-key")
		}
		return o, nil
	}
	k, err := os.ReadFile(key)
	if err != nil {
		return nil, fmt.Errorf("--sign-key: %w", err)
	}
	crt, err := os.ReadFile(cert)
	if err != nil {
		return nil, fmt.Errorf("--sign-cert: %w", err)
	}
	pass, err := signKeyPass(c)
	if err != nil {
		return nil, err
	}
	o.Signer, err = uki.NewSignerPass(k, crt, pass)
	switch {
	case errors.Is(err, uki.ErrEncryptedKey):
		return nil, fmt.Errorf("--sign-key %s is encrypted: give its passphrase with --sign-key-pass-file FILE or $%s, or decrypt it (openssl pkey -in %s -out PLAIN.key) and keep the copy private", key, signKeyPassEnv, key)
	case errors.Is(err, uki.ErrPassphrase):
		return nil, fmt.Errorf("--sign-key %s: the passphrase (from %s) does not decrypt it", key, passSource(c))
	case err != nil:
		return nil, fmt.Errorf("--sign-key %s, --sign-cert %s: %w", key, cert, err)
	}
	return o, nil
}

// signKeyPassEnv holds the passphrase of an encrypted --sign-key.
const signKeyPassEnv = "NBIMG_SIGN_KEY_PASS"

// signKeyPass returns the passphrase of --sign-key: the first line of
// --sign-key-pass-file (without its line end), else $NBIMG_SIGN_KEY_PASS
// when set, else nil.
func signKeyPass(c *cli.Context) ([]byte, error) {
	if p := c.String("sign-key-pass-file"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("--sign-key-pass-file: %w", err)
		}
		line, _, _ := bytes.Cut(b, []byte("\n"))
		return bytes.TrimSuffix(line, []byte("\r")), nil
	}
	if v, ok := os.LookupEnv(signKeyPassEnv); ok {
		return []byte(v), nil
	}
	return nil, nil
}

// passSource names where signKeyPass took the passphrase.
func passSource(c *cli.Context) string {
	if p := c.String("sign-key-pass-file"); p != "" {
		return "--sign-key-pass-file " + p
	}
	return "$" + signKeyPassEnv
}

// ukiFlagsSet reports whether any flag of ukiFlags was given.
func ukiFlagsSet(c *cli.Context) string {
	for _, f := range ukiFlags() {
		if name := f.Names()[0]; c.IsSet(name) {
			return name
		}
	}
	return ""
}

func ukiCommand() *cli.Command {
	flags := bootTreeFlags("the .cmdline section", append(ukiFlags(),
		&cli.StringFlag{Name: "store-image", Usage: "with --store-url: write the store image the server serves to `FILE` (default: nix-store.squashfs beside the UKI)", TakesFile: true},
	)...)
	flags[0] = &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Required: true, Usage: "output `FILE` (e.g. nixos.efi)"}
	return &cli.Command{
		Name:      "uki",
		Usage:     "write a Unified Kernel Image: kernel, initrd with the store, command line in one EFI file, optionally signed",
		ArgsUsage: " ",
		Description: "Builds the squashfs of the system's closure, appends it to the system's\n" +
			"initrd as netboot does, and writes one EFI executable that UEFI firmware\n" +
			"boots from a disk or over the network: systemd's EFI stub with the sections\n" +
			"  .osrel    the system's os-release\n" +
			"  .cmdline  init=<toplevel>/init, kernel-params and --cmdline\n" +
			"  .uname    the kernel release\n" +
			"  .initrd   the system's initrd followed by the store image\n" +
			"  .linux    the kernel\n\n" +
			"With --store-url the store stays out of the UKI: .initrd is the system's\n" +
			"initrd plus nbimg's small stage-0 segment, .cmdline starts stage 0\n" +
			"(rdinit=/nbimg/stage0) and, for nbd://, pins the store image's dm-verity\n" +
			"root hash (nbimg.roothash=), and the image itself (the squashfs with its\n" +
			"hash tree appended) is written to --store-image, by default\n" +
			"nix-store.squashfs beside FILE: serve that file at the URL (see\n" +
			"examples/serving.md). The image lands first, then the UKI that names it.\n\n" +
			"With --sign-key and --sign-cert the image carries an Authenticode signature\n" +
			"(made in Go, no sbsign needed) covering all of it, command line included:\n" +
			"with Secure Boot on, firmware that trusts the certificate boots exactly\n" +
			"this kernel, initrd, store and command line. An encrypted key (PKCS#8\n" +
			"\"ENCRYPTED PRIVATE KEY\" with PBES2, or OpenSSL's legacy encrypted PEM)\n" +
			"is read with the passphrase in --sign-key-pass-file or $NBIMG_SIGN_KEY_PASS.\n" +
			"The stub's architecture follows the system's (x86_64: linuxx64.efi.stub,\n" +
			"aarch64: linuxaa64.efi.stub).\n" +
			"The same input and key give the same bytes.\n\n" +
			"Examples:\n" +
			"  nbimg uki -o nixos.efi --toplevel ./result\n" +
			"  nbimg uki -o nixos.efi --toplevel ./result --sign-key db.key --sign-cert db.pem\n" +
			"  nbimg uki -o nixos.efi --toplevel ./result --sign-key PkKek-1-snakeoil.key \\\n" +
			"      --sign-cert PkKek-1-snakeoil.pem --sign-key-pass-file ./passphrase\n" +
			"  nbimg uki -o /srv/tftp/nixos.efi --toplevel ./result --sign-key db.key --sign-cert db.pem \\\n" +
			"      --store-url nbd://192.168.1.2/nixos --store-image /srv/nbd/nixos.squashfs\n" +
			"    (then e.g. nbdkit -r file /srv/nbd/nixos.squashfs)",
		Flags:  flags,
		Action: runUKI,
	}
}

func runUKI(c *cli.Context) error {
	u := newUI(c)
	start := time.Now()
	uo, err := ukiOptionsFromFlags(c)
	if err != nil {
		return err
	}
	cl, o, err := bootOptionsFromFlags(c, u)
	if err != nil {
		return err
	}
	if c.IsSet("store-image") {
		if o.NetStore == nil {
			return usageErrorf("--store-image needs --store-url")
		}
		uo.StoreImage = c.String("store-image")
	}
	out := c.String("output")
	res, err := builder.UKI(c.Context, cl, out, o, *uo)
	u.Done()
	if err != nil {
		return err
	}
	printWarnings(u, res.Warnings)
	signed := "unsigned"
	if uo.Signer != nil {
		signed = "signed by " + uo.Signer.Cert.Subject.String()
	}
	u.Infof("%s: UKI of %s (%s), %d store paths, initrd %s, stub %s, in %s",
		out, humanBytes(res.Layout.Size), signed, len(cl.Paths), humanBytes(res.Initrd.Size), res.Stub,
		time.Since(start).Round(100*time.Millisecond))
	if s := res.Store; s != nil {
		root := ""
		if s.VerityRoot != "" {
			root = fmt.Sprintf(", dm-verity root hash %s (hash area at byte %d)", s.VerityRoot, s.DataSize)
		}
		u.Infof("%s: store image of %s, serve it at %s%s", res.StoreImage, humanBytes(s.Size), s.URL, root)
	}
	return nil
}
