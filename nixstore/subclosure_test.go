package nixstore

import (
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
		sub, err := c.SubClosure(root)
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
	if _, err := c.SubClosure(p("x")); err == nil || !strings.Contains(err.Error(), p("x")) {
		t.Errorf("root outside the closure: %v", err)
	}
	c.Paths[1].References = []string{p("z")}
	if _, err := c.SubClosure(p("a")); err == nil || !strings.Contains(err.Error(), "not closed") {
		t.Errorf("dangling reference: %v", err)
	}
}
