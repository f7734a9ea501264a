package netboot

import (
	"fmt"
	"strings"
)

// Kernel parameters of a system booted the "NixOS on Clients" way: the
// initrd carries no store; its stage 1 brings up the network, mounts the
// local disk and substitutes the system's closure onto it from a Nix
// binary cache (nbimg binary-cache), trusting only one key, then boots
// it. Written by `nbimg pxe --binary-cache URL --public-key FILE`; read
// by examples/binary-cache-client.nix and the fixture's
// stage-1-substitute.sh.
const (
	// ParamToplevel names the system to substitute: its store path.
	ParamToplevel = "nbimg.toplevel"
	// ParamSubstituter is the binary cache's URL (http://, https://,
	// file://), Nix's substituters setting.
	ParamSubstituter = "nbimg.substituter"
	// ParamTrustedKey is the cache's public key, "name:base64", the only
	// one in trusted-public-keys; signatures are required.
	ParamTrustedKey = "nbimg.trusted-key"
)

// Substitute says where a client substitutes its system from.
type Substitute struct {
	URL       string // the binary cache
	PublicKey string // its public key, "name:base64"
}

// Check reports a URL or key that cannot go on a kernel command line.
func (s Substitute) Check() error {
	if !strings.HasPrefix(s.URL, "http://") && !strings.HasPrefix(s.URL, "https://") && !strings.HasPrefix(s.URL, "file://") {
		return fmt.Errorf("binary cache URL %q: want http://, https:// or file://", s.URL)
	}
	for _, v := range []string{s.URL, s.PublicKey} {
		if v == "" || strings.ContainsAny(v, " \t\n\r\x00\"'") {
			return fmt.Errorf("%q is empty or has blanks or quotes: it cannot be a kernel parameter", v)
		}
	}
	if !strings.Contains(s.PublicKey, ":") {
		return fmt.Errorf("public key %q is not name:base64", s.PublicKey)
	}
	return nil
}

// KernelParams returns the parameters that substitute toplevel.
func (s Substitute) KernelParams(toplevel string) string {
	return ParamToplevel + "=" + toplevel + " " + ParamSubstituter + "=" + s.URL + " " + ParamTrustedKey + "=" + s.PublicKey
}
