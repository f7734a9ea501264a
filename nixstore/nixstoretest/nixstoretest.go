// Package nixstoretest builds, with real Nix, the small store paths that
// nixstore's and nbimg's closure tests check against (testdata/store.nix), and
// the closureInfo Nix makes of them (internal/check/closureinfo.nix, built
// by nix-build: the expected bytes are Nix's, not derived in Go).
package nixstoretest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// GraphPath is one entry of Nix's exportReferencesGraph JSON.
type GraphPath struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    uint64   `json:"narSize"`
	References []string `json:"references"`
}

// Store is the built test store.
type Store struct {
	Top       string      // NixOS-shaped system (kernel, initrd, init, dtbs, kernel-params)
	Unrelated string      // a store path nothing refers to
	Graph     []GraphPath // Top's closure as Nix records it, in Nix's order
	// ClosureInfo is the closureInfo directory of Top that Nix built (a
	// read-only store path).
	ClosureInfo string
	// The files in ClosureInfo.
	StorePaths, Registration, TotalNarSize []byte
}

var (
	once     sync.Once
	built    *Store
	buildErr error
)

// StoreNix returns the path of nixstore/testdata/store.nix.
func StoreNix() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "store.nix")
}

// NixStore builds the test store once per test binary. It skips the test
// without Nix (fails when tools are required).
func NixStore(t testing.TB) *Store {
	t.Helper()
	nixBuild := testutil.Tool(t, "nix-build", "nix-bin")
	testutil.Tool(t, "nix-store", "nix-bin")
	once.Do(func() { built, buildErr = build(nixBuild) })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func build(nixBuild string) (*Store, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(nixBuild, StoreNix(), "--no-out-link", "--option", "substituters", "",
		"-A", "top", "-A", "info", "-A", "graph", "-A", "unrelated")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("nix-build %s: %v\n%s", StoreNix(), err, stderr.String())
	}
	paths := strings.Fields(string(out))
	if len(paths) != 4 {
		return nil, fmt.Errorf("nix-build printed %q, want four paths", out)
	}
	s := &Store{Top: paths[0], ClosureInfo: paths[1], Unrelated: paths[3]}
	data, err := os.ReadFile(paths[2])
	if err != nil {
		return nil, err
	}
	var attrs struct {
		Closure []GraphPath `json:"closure"`
	}
	if err := json.Unmarshal(data, &attrs); err != nil {
		return nil, fmt.Errorf("%s: %v", paths[2], err)
	}
	s.Graph = attrs.Closure
	for _, f := range []struct {
		name string
		data *[]byte
	}{{"store-paths", &s.StorePaths}, {"registration", &s.Registration}, {"total-nar-size", &s.TotalNarSize}} {
		if *f.data, err = os.ReadFile(filepath.Join(s.ClosureInfo, f.name)); err != nil {
			return nil, err
		}
	}
	if len(s.Graph) == 0 || len(s.Registration) == 0 {
		return nil, fmt.Errorf("nix-build %s: empty closure of %s", StoreNix(), s.Top)
	}
	return s, nil
}
