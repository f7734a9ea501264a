package builder

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSubClosure(t *testing.T) {
	p := func(c string) string { return "/nix/store/" + strings.Repeat(c, 32) + "-" + c }
	c := &Closure{StoreDir: "/nix/store", Paths: []PathInfo{
		{Path: p("a"), References: []string{p("a"), p("b")}},
		{Path: p("b"), References: []string{p("c")}},
		{Path: p("c")},
		{Path: p("d"), References: []string{p("c")}},
	}}
	for root, want := range map[string][]string{
		p("a"): {p("a"), p("b"), p("c")},
		p("d"): {p("c"), p("d")},
		p("c"): {p("c")},
	} {
		sub, err := SubClosure(c, root)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, pi := range sub.Paths {
			got = append(got, pi.Path)
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("SubClosure(%s) = %v, want %v", root, got, want)
		}
	}
	if _, err := SubClosure(c, p("x")); err == nil || !strings.Contains(err.Error(), p("x")) {
		t.Errorf("root outside the closure: %v", err)
	}
	c.Paths[1].References = []string{p("z")}
	if _, err := SubClosure(c, p("a")); err == nil || !strings.Contains(err.Error(), "not closed") {
		t.Errorf("dangling reference: %v", err)
	}
}

func TestMenuTitle(t *testing.T) {
	root := t.TempDir()
	top := "/nix/store/5n0mckly1mfcz15pmrw4vxa257wlwgk4-nixos-system-host-24.11.20240101.abcdef"
	if err := os.MkdirAll(filepath.Join(root, top), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Closure{StoreRoot: root, Toplevel: &Toplevel{Path: top, Label: "nixos-system-host-24.11.20240101.abcdef"}}
	if got := MenuTitle(c); got != "host-24.11.20240101.abcdef (5n0mckly)" {
		t.Errorf("without nixos-version: %q", got)
	}
	os.WriteFile(filepath.Join(root, top, "nixos-version"), []byte("24.11.20240101.abcdef"), 0o644)
	if got := MenuTitle(c); got != "host 24.11.20240101.abcdef (5n0mckly)" {
		t.Errorf("with nixos-version: %q", got)
	}
}
