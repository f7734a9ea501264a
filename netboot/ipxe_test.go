package netboot

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
)

const toplevel = "/nix/store/9r8gpyv4b4yz8lqld2s3z3xh6s3kq0yc-nixos-system-nbimg-24.11"

func TestScriptGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    IPXE
	}{
		{"plain", IPXE{Init: InitPath(toplevel)}},
		{"params", IPXE{Init: InitPath(toplevel), KernelParams: "console=ttyS0 loglevel=4 root=fstab"}},
		{"params-cmdline", IPXE{Init: InitPath(toplevel + "/"), KernelParams: " console=ttyS0 loglevel=4\t", Cmdline: "boot.shell_on_fail"}},
		{"aarch64", IPXE{Init: InitPath(toplevel), KernelParams: "console=ttyAMA0", Kernel: "Image"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.s.Script()
			if err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, tc.name+".ipxe", got)
		})
	}
}

// TestScriptShape checks the lines DESIGN.md fixes, independently of the
// golden files.
func TestScriptShape(t *testing.T) {
	s := IPXE{Init: InitPath(toplevel), KernelParams: "console=ttyS0", Cmdline: "quiet"}
	b, err := s.Script()
	if err != nil {
		t.Fatal(err)
	}
	want := "#!ipxe\n" +
		"kernel --name bzImage bzImage init=" + toplevel + "/init initrd=initrd console=ttyS0 quiet ${cmdline}\n" +
		"initrd --name initrd initrd\n" +
		"boot\n"
	if string(b) != want {
		t.Errorf("got\n%s\nwant\n%s", b, want)
	}
	cl, err := s.KernelCmdline()
	if err != nil {
		t.Fatal(err)
	}
	if want := "init=" + toplevel + "/init initrd=initrd console=ttyS0 quiet"; cl != want {
		t.Errorf("KernelCmdline = %q, want %q", cl, want)
	}
	var buf bytes.Buffer
	if n, err := s.WriteTo(&buf); err != nil || n != int64(len(b)) || !bytes.Equal(buf.Bytes(), b) {
		t.Errorf("WriteTo = %d, %v", n, err)
	}
}

func TestScriptRejects(t *testing.T) {
	for _, s := range []IPXE{
		{},
		{Init: "/nix/store/x/init\nboot"},
		{Init: "/nix/store/a b/init"},
		{Init: "/init", KernelParams: "a\nb"},
		{Init: "/init", Cmdline: "x\r"},
	} {
		if _, err := s.Script(); !errors.Is(err, ErrBadScript) {
			t.Errorf("%+v: err = %v, want ErrBadScript", s, err)
		}
		if _, err := s.KernelCmdline(); !errors.Is(err, ErrBadScript) {
			t.Errorf("%+v: KernelCmdline err = %v", s, err)
		}
	}
	for _, k := range []string{"a b", "dir/Image", "x\nboot", "${k}"} {
		if _, err := (IPXE{Init: "/init", Kernel: k}).Script(); !errors.Is(err, ErrBadScript) {
			t.Errorf("kernel name %q: err = %v, want ErrBadScript", k, err)
		}
	}
	if !strings.HasSuffix(InitPath("/a/"), "/a/init") {
		t.Error("InitPath")
	}
}
