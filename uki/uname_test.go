package uki_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/uki"
)

// TestKernelVersion reads the release of Debian's cloud kernels and
// compares it with the name Debian gives the file (vmlinuz-RELEASE).
func TestKernelVersion(t *testing.T) {
	kernels, err := filepath.Glob("/boot/vmlinuz-*")
	if err != nil {
		t.Fatal(err)
	}
	if len(kernels) == 0 {
		testutil.SkipOrFail(t, "no /boot/vmlinuz-*: install the Debian package linux-image-cloud-amd64")
		return
	}
	for _, k := range kernels {
		f, err := os.Open(k)
		if err != nil {
			t.Fatal(err)
		}
		got := uki.KernelVersion(f)
		f.Close()
		if want := strings.TrimPrefix(filepath.Base(k), "vmlinuz-"); got != want {
			t.Errorf("%s: KernelVersion = %q, want %q", k, got, want)
		}
	}
	if v := uki.KernelVersion(strings.NewReader("not a kernel")); v != "" {
		t.Errorf("KernelVersion of text = %q", v)
	}
}
