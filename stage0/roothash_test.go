package stage0

import (
	"strings"
	"testing"
)

// TestRootHashParam: nbimg.roothash= on the command line (as a signed
// UKI carries it) must name the configuration's dm-verity root hash, in
// any case; a malformed or different hash, or a configuration without
// verity, stops stage 0.
func TestRootHashParam(t *testing.T) {
	c := validNBD()
	root := c.Verity.RootHex
	for _, line := range []string{"", "console=ttyS0", "nbimg.roothash=" + root, "rdinit=/nbimg/stage0 nbimg.roothash=" + strings.ToUpper(root)} {
		o, err := ParseCmdline(line)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if err := o.CheckRootHash(c); err != nil {
			t.Errorf("%q: %v", line, err)
		}
	}
	other := strings.Repeat("cd", 32)
	if other == root {
		t.Fatal("the test's other hash is the configuration's")
	}
	o, err := ParseCmdline("nbimg.roothash=" + other)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.CheckRootHash(c); err == nil || !strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), root) {
		t.Errorf("a different root hash: %v; want an error naming both", err)
	}
	if err := o.CheckRootHash(validHTTP()); err == nil {
		t.Error("a pinned root hash with an HTTP configuration without verity passed")
	}
	for _, bad := range []string{"nbimg.roothash=", "nbimg.roothash=xyz", "nbimg.roothash=" + root[:62], "nbimg.roothash=" + root + "00"} {
		if _, err := ParseCmdline(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
