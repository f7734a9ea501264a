package testutil

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// VeritySetup returns veritysetup (Debian cryptsetup-bin), skipping or
// failing the test when it is absent.
func VeritySetup(t testing.TB) string {
	t.Helper()
	return Tool(t, "veritysetup", "cryptsetup-bin")
}

// VerityVerify runs `veritysetup verify DATA HASH ROOT --hash-offset OFF`
// (veritysetup reads the tree's parameters from the superblock at OFF) and
// returns its combined output and whether it accepted the tree.
func VerityVerify(t testing.TB, data, hash, rootHex string, hashOffset int64) (string, bool) {
	t.Helper()
	bin := VeritySetup(t)
	cmd := exec.Command(bin, "verify", "--hash-offset", strconv.FormatInt(hashOffset, 10), data, hash, rootHex)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("veritysetup verify: %v", err)
		}
		return string(out), false
	}
	return string(out), true
}

// VerityFormat runs `veritysetup format` on DATA writing the hash area to
// HASH at hashOffset with the given salt and UUID (hex, "-" for none; UUID
// in its 8-4-4-4-12 form) and returns the root hash it prints.
func VerityFormat(t testing.TB, data, hash, saltHex, uuid string, hashOffset int64) string {
	t.Helper()
	bin := VeritySetup(t)
	cmd := exec.Command(bin, "format", "--hash", "sha256", "--format", "1",
		"--data-block-size", "4096", "--hash-block-size", "4096",
		"--salt", saltHex, "--uuid", uuid,
		"--hash-offset", strconv.FormatInt(hashOffset, 10), data, hash)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("veritysetup format: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "Root hash" {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("veritysetup format printed no root hash:\n%s", out)
	return ""
}
