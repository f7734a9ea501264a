package testutil

import "testing"

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
