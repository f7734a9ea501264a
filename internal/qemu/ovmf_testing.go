package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

// RequireOVMF returns the firmware of a UEFI boot with a fresh copy of its
// variable store, skipping the test (or failing it when tools are
// required) when ovmf is not installed.
func RequireOVMF(t testing.TB, secureBoot bool) OVMF {
	t.Helper()
	o := OVMF{SecureBoot: secureBoot}
	testutil.File(t, o.Code(), "ovmf")
	testutil.File(t, o.Vars(), "ovmf")
	if err := o.CopyVars(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return o
}

// ESPT writes an ESP image holding efi as the default boot file, in a
// temporary directory, and returns its path.
func ESPT(t testing.TB, efi string) string {
	t.Helper()
	testutil.Tool(t, "mkfs.vfat", "dosfstools")
	testutil.Tool(t, "mcopy", "mtools")
	p := filepath.Join(t.TempDir(), "esp.img")
	ctx := context.Background()
	if tc, ok := t.(interface{ Context() context.Context }); ok {
		ctx = tc.Context()
	}
	if err := ESP(ctx, p, efi); err != nil {
		t.Fatal(err)
	}
	return p
}

var netnsSeq atomic.Int64

// NetnsT creates a network namespace for the test (see NewNetns), deleted
// when it ends; it skips (or fails, when tools are required) unless the
// test runs as root with iproute2.
func NetnsT(t testing.TB) *Netns {
	t.Helper()
	testutil.Tool(t, "ip", "iproute2")
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "network namespaces need root")
		return nil
	}
	n, err := NewNetns(context.Background(), fmt.Sprintf("nbimg-%d-%d", os.Getpid(), netnsSeq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}
