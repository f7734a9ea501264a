package qemu

import (
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// RequireAArch64 returns the aarch64 QEMU binary, skipping the test (or
// failing it when NBIMG_REQUIRE_TOOLS is set) when it is not installed.
func RequireAArch64(t testing.TB) string {
	t.Helper()
	return testutil.Tool(t, AArch64Binary, "qemu-system-arm")
}

// RequireAAVMF is RequireAArch64 plus the AAVMF firmware files.
func RequireAAVMF(t testing.TB) string {
	t.Helper()
	bin := RequireAArch64(t)
	testutil.File(t, AAVMFCode, "qemu-efi-aarch64")
	testutil.File(t, AAVMFVars, "qemu-efi-aarch64")
	return bin
}
