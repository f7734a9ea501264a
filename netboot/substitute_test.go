package netboot_test

import (
	"testing"

	"github.com/nbimg/nbimg/netboot"
)

func TestSubstitute(t *testing.T) {
	s := netboot.Substitute{URL: "http://10.0.0.1:8080/cache", PublicKey: "cache-1:SsxXtvik9ttrApVbL2HMV53GMRLAOGA7YaRM2eyvy7U="}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	want := "nbimg.toplevel=/nix/store/q94c2m0ndl2vf15lv945qxm4v4rx3gv6-nixos-system-x nbimg.substituter=http://10.0.0.1:8080/cache nbimg.trusted-key=cache-1:SsxXtvik9ttrApVbL2HMV53GMRLAOGA7YaRM2eyvy7U="
	if got := s.KernelParams("/nix/store/q94c2m0ndl2vf15lv945qxm4v4rx3gv6-nixos-system-x"); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	for _, bad := range []netboot.Substitute{
		{URL: "ftp://x", PublicKey: s.PublicKey},
		{URL: "http://x y", PublicKey: s.PublicKey},
		{URL: s.URL, PublicKey: ""},
		{URL: s.URL, PublicKey: "nocolon"},
		{URL: s.URL, PublicKey: "a:b c"},
	} {
		if err := bad.Check(); err == nil {
			t.Errorf("%+v passed the check", bad)
		}
	}
}
