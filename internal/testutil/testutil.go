// Package testutil holds helpers shared by nbimg's tests: finding the
// external tools that check nbimg's artifacts, and the rule that turns a
// missing tool into a failure when NBIMG_REQUIRE_TOOLS is set (as CI does).
package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// RequireToolsEnv names the variable that turns skips for missing checkers
// into failures.
const RequireToolsEnv = "NBIMG_REQUIRE_TOOLS"

// Required reports whether missing tools must fail the test run.
func Required() bool {
	v := os.Getenv(RequireToolsEnv)
	return v != "" && v != "0"
}

// SkipOrFail skips the test with the reason, or fails it when tools are
// required.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("required by "+RequireToolsEnv+": "+format, args...)
	}
	t.Skipf(format, args...)
}

// Tool returns the path of an executable found in PATH (or in /sbin and
// /usr/sbin, where Debian puts some of them), skipping or failing the test
// when it is absent. pkg names the Debian package that provides it.
func Tool(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	SkipOrFail(t, "%s not found: install the Debian package %s", name, pkg)
	return ""
}

// File returns path if it exists, skipping or failing the test otherwise.
func File(t testing.TB, path, pkg string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		SkipOrFail(t, "%s not found: install the Debian package %s", path, pkg)
	}
	return path
}
