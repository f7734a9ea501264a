package check

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// ClosureInfoNix is closureinfo.nix: a function of rootPaths that real Nix
// builds into a closureInfo directory the way nixpkgs' closureInfo does,
// with the host's /bin/sh and jq instead of nixpkgs.
//
//go:embed closureinfo.nix
var ClosureInfoNix []byte

// ClosureInfo has real Nix build the closureInfo of the store paths roots
// (store-paths, registration, total-nar-size; see closureinfo.nix) and
// returns its directory in the store. The roots must be valid in the host's
// store.
func ClosureInfo(t testing.TB, roots ...string) string {
	t.Helper()
	nixBuild := testutil.Tool(t, "nix-build", "nix-bin")
	testutil.Tool(t, "jq", "jq")
	expr := filepath.Join(t.TempDir(), "closureinfo.nix")
	if err := os.WriteFile(expr, ClosureInfoNix, 0o644); err != nil {
		t.Fatal(err)
	}
	var list strings.Builder
	for _, r := range roots {
		fmt.Fprintf(&list, " (builtins.storePath %s)", strconv.Quote(r))
	}
	out := Run(t, "", nil, nixBuild, expr, "--no-out-link", "--option", "substituters", "",
		"--arg", "rootPaths", "["+list.String()+" ]")
	dir := strings.TrimSpace(string(out))
	if !strings.HasPrefix(dir, "/nix/store/") || strings.ContainsRune(dir, '\n') {
		t.Fatalf("nix-build %s printed %q, want one store path", expr, out)
	}
	return dir
}

// NixStore runs nix-store with a store rooted at root (nix-store --store
// root) and stdin as its input, and returns what it printed (standard
// output and error) and its error.
func NixStore(t testing.TB, root string, stdin []byte, args ...string) (string, error) {
	t.Helper()
	bin := testutil.Tool(t, "nix-store", "nix-bin")
	out, stderr, err := run("", stdin, nil, bin, append([]string{"--store", root}, args...)...)
	return string(out) + string(stderr), err
}

// NixLoadVerify has real Nix accept a store laid out under root
// (root/nix/store/...) with registration, the nix-store --load-db format:
// it loads registration into a new database under root, then has
// nix-store --verify --check-contents hash every path against it. It
// returns the closure of top in the loaded database, sorted.
func NixLoadVerify(t testing.TB, root string, registration []byte, top string) []string {
	t.Helper()
	if out, err := NixStore(t, root, registration, "--load-db"); err != nil {
		t.Fatalf("nix-store --store %s --load-db: %v\n%s", root, err, out)
	}
	NixVerify(t, root)
	out, err := NixStore(t, root, nil, "--query", "--requisites", top)
	if err != nil {
		t.Fatalf("nix-store --store %s --query --requisites %s: %v\n%s", root, top, err, out)
	}
	paths := strings.Fields(out)
	slices.Sort(paths)
	return paths
}

// NixVerify fails the test unless nix-store --verify --check-contents finds
// every path of the store under root as its database records it.
func NixVerify(t testing.TB, root string) {
	t.Helper()
	if out, err := NixStore(t, root, nil, "--verify", "--check-contents"); err != nil || nixVerifyComplains(out) {
		t.Fatalf("nix-store --store %s --verify --check-contents: %v\n%s", root, err, out)
	}
}

// NixVerifyFails reports a test error unless nix-store --verify
// --check-contents fails on the store under root and says a path was
// modified: the negative control after a test changed a file.
func NixVerifyFails(t testing.TB, root string) {
	t.Helper()
	if out, err := NixStore(t, root, nil, "--verify", "--check-contents"); err == nil || !strings.Contains(out, "modified") {
		t.Errorf("nix-store --store %s --verify --check-contents accepts a changed store: %v\n%s", root, err, out)
	}
}

// nixVerifyComplains reports whether nix-store --verify's output names a
// problem, in case it does not also fail.
func nixVerifyComplains(out string) bool {
	return strings.Contains(out, "modified") || strings.Contains(out, "error")
}
