package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// ConsoleEnv names the variable that, set to 1, copies every test boot's
// serial console to stderr as it arrives.
const ConsoleEnv = "NBIMG_QEMU_CONSOLE"

// Require returns the QEMU binary, skipping the test (or failing it when
// NBIMG_REQUIRE_TOOLS is set) when it is not installed.
func Require(t testing.TB) string {
	t.Helper()
	return testutil.Tool(t, DefaultBinary, "qemu-system-x86")
}

// RequireNetboot is Require plus the iPXE ROM that network boots use.
func RequireNetboot(t testing.TB) string {
	t.Helper()
	bin := Require(t)
	testutil.File(t, "/usr/lib/ipxe/qemu/efi-"+DefaultNIC+".rom", "ipxe-qemu")
	return bin
}

// BootT boots c (Require must have been called), failing the test with the
// console's tail when the marker does not appear, and logs how long the
// boot took. It stops with the test's context.
func BootT(t testing.TB, c Config) *Result {
	t.Helper()
	if c.Console == nil && os.Getenv(ConsoleEnv) == "1" {
		c.Console = os.Stderr
	}
	ctx := context.Background()
	if tc, ok := t.(interface{ Context() context.Context }); ok {
		ctx = tc.Context()
	}
	res, err := Boot(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("qemu (accel=%s): marker after %.1fs: %s", c.accel(), res.Elapsed.Seconds(), res.Line)
	return res
}

// CloudKernel returns the newest Debian cloud kernel in /boot and its
// version (the name of its /lib/modules directory), skipping the test (or
// failing it when tools are required) when there is none.
func CloudKernel(t testing.TB) (kernel, version string) {
	t.Helper()
	kernels, _ := filepath.Glob("/boot/vmlinuz-*-cloud-amd64")
	if len(kernels) == 0 {
		testutil.SkipOrFail(t, "no /boot/vmlinuz-*-cloud-amd64: install the Debian package linux-image-cloud-amd64")
		return "", ""
	}
	kernel = kernels[len(kernels)-1]
	return kernel, strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
}
