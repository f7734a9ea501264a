// Package nixstoretest builds, with real Nix, the small store paths that
// nixstore's and nbimg's closure tests check against (testdata/store.nix), and
// the closureInfo Nix makes of them.
package nixstoretest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
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
	// The closureInfo files of Top, made from Graph as nixpkgs' closureInfo
	// makes them.
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
	cmd := exec.Command(nixBuild, StoreNix(), "--no-out-link", "-A", "top", "-A", "info", "-A", "unrelated")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("nix-build %s: %v\n%s", StoreNix(), err, stderr.String())
	}
	paths := strings.Fields(string(out))
	if len(paths) != 3 {
		return nil, fmt.Errorf("nix-build printed %q, want three paths", out)
	}
	s := &Store{Top: paths[0], Unrelated: paths[2]}
	data, err := os.ReadFile(paths[1])
	if err != nil {
		return nil, err
	}
	var attrs struct {
		Closure []GraphPath `json:"closure"`
	}
	if err := json.Unmarshal(data, &attrs); err != nil {
		return nil, fmt.Errorf("%s: %v", paths[1], err)
	}
	s.Graph = attrs.Closure
	var sp, reg bytes.Buffer
	var total uint64
	for _, p := range s.Graph {
		sp.WriteString(p.Path + "\n")
		fmt.Fprintf(&reg, "%s\n%s\n%d\n\n%d\n", p.Path, p.NarHash, p.NarSize, len(p.References))
		for _, r := range p.References {
			reg.WriteString(r + "\n")
		}
		total += p.NarSize
	}
	s.StorePaths, s.Registration = sp.Bytes(), reg.Bytes()
	s.TotalNarSize = []byte(strconv.FormatUint(total, 10) + "\n")
	return s, nil
}

// WriteClosureInfo writes the expected closureInfo directory of Top into dir.
func (s *Store) WriteClosureInfo(t testing.TB, dir string) {
	t.Helper()
	for name, data := range map[string][]byte{"store-paths": s.StorePaths, "registration": s.Registration, "total-nar-size": s.TotalNarSize} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
