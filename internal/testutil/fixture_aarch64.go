package testutil

import (
	"path/filepath"
	"testing"
)

// FixtureAArch64Env names the variable that points to the aarch64 fixture
// system's output directory (the Makefile sets it to
// testdata/fixture/out-aarch64).
const FixtureAArch64Env = "NBIMG_FIXTURE_AARCH64"

// LoadFixtureAArch64 is LoadFixture for the aarch64 fixture system, built
// by `testdata/fixture/build.sh --arch aarch64` from Debian's arm64
// packages: $NBIMG_FIXTURE_AARCH64, else testdata/fixture/out-aarch64. Its
// kernel is an arm64 Image for QEMU's virt machine (console ttyAMA0); it
// has no reference image.
func LoadFixtureAArch64(t testing.TB) *Fixture {
	t.Helper()
	return loadFixture(t, FixtureAArch64Env, "out-aarch64", "aarch64-linux")
}

// AArch64Stub returns systemd's arm64 UKI stub (linuxaa64.efi.stub, from
// Debian's systemd-boot-efi:arm64) that build.sh unpacked next to the
// aarch64 fixture f, for UKIs of it: the host's systemd-boot-efi has only
// the x86-64 stub.
func AArch64Stub(t testing.TB, f *Fixture) string {
	t.Helper()
	env, err := readEnvFile(filepath.Join(f.Dir, "arm64", "arm64.env"))
	if err != nil {
		t.Fatalf("aarch64 fixture: %v (rebuild it with `make fixture`)", err)
	}
	stub := env["STUB"]
	if stub == "" || !fileExists(stub) {
		t.Fatalf("aarch64 fixture: no arm64 UKI stub (%q) in %s/arm64: rebuild it with `make fixture`", stub, f.Dir)
	}
	return stub
}
