package netstore

import (
	"errors"
	"os"
	"testing"
)

func TestGOARCH(t *testing.T) {
	for sys, want := range map[string]string{"x86_64-linux": "amd64", "aarch64-linux": "arm64"} {
		if got, err := GOARCH(sys); err != nil || got != want {
			t.Errorf("GOARCH(%q) = %q, %v", sys, got, err)
		}
	}
	if _, err := GOARCH("mips-linux"); !errors.Is(err, ErrStage0) {
		t.Errorf("unknown system: %v", err)
	}
}

// TestStage0Build builds stage 0 from the checkout and checks that it is
// static, for both architectures nbimg's systems use; a dynamically
// linked program (the test binary itself may be one) is refused.
func TestStage0Build(t *testing.T) {
	if testing.Short() {
		t.Skip("builds stage 0 twice")
	}
	for _, arch := range []string{"amd64", "arm64"} {
		b, err := Stage0(t.Context(), Stage0Options{GOARCH: arch, CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckStage0(b, arch); err != nil {
			t.Error(err)
		}
		other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[arch]
		if err := CheckStage0(b, other); !errors.Is(err, ErrStage0) {
			t.Errorf("a %s program accepted for %s: %v", arch, other, err)
		}
	}
	if err := CheckStage0([]byte("#!/bin/sh\n"), "amd64"); !errors.Is(err, ErrStage0) {
		t.Errorf("a script accepted: %v", err)
	}
	t.Setenv(Stage0Env, "/nonexistent/stage0")
	if _, err := Stage0(t.Context(), Stage0Options{GOARCH: "amd64"}); !errors.Is(err, ErrStage0) {
		t.Errorf("missing $%s: %v", Stage0Env, err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Stage0(t.Context(), Stage0Options{GOARCH: "amd64", File: self}); err == nil {
		b, rerr := os.ReadFile(self)
		if rerr != nil || CheckStage0(b, "amd64") != nil {
			t.Error("a program CheckStage0 refuses was accepted")
		}
	}
}
