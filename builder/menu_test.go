package builder

import (
	"testing"

	"github.com/nbimg/nbimg/nixstore"
)

func TestMenuTitle(t *testing.T) {
	top := "/nix/store/5n0mckly1mfcz15pmrw4vxa257wlwgk4-nixos-system-host-24.11.20240101.abcdef"
	c := &nixstore.Closure{Toplevel: &nixstore.Toplevel{Path: top, Label: "nixos-system-host-24.11.20240101.abcdef"}}
	if got := MenuTitle(c); got != "host-24.11.20240101.abcdef (5n0mckly)" {
		t.Errorf("without nixos-version: %q", got)
	}
	c.Toplevel.Version = "24.11.20240101.abcdef"
	if got := MenuTitle(c); got != "host 24.11.20240101.abcdef (5n0mckly)" {
		t.Errorf("with nixos-version: %q", got)
	}
}
