// Package kmod finds the kernel modules stage 0 needs in a modules tree
// (lib/modules/<version> as depmod writes it): by name with their
// dependencies from modules.dep, and by device modalias through
// modules.alias, skipping what modules.builtin says is built in. Loading
// (init_module/finit_module, decompressing .ko.xz/.ko.zst/.ko.gz in Go)
// is Linux-only, in load_linux.go.
//
// Limits: module parameters and modprobe.d options are not applied;
// softdeps are ignored.
package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// ErrUnknown is returned for a module that is neither in modules.dep nor
// built in.
var ErrUnknown = errors.New("kmod: module not found")

// Name returns a module's canonical name for a file name or module name:
// the base name without .ko[.xz|.zst|.gz], with '-' as '_'.
func Name(s string) string {
	b := path.Base(s)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// Index is the parsed metadata of one modules directory.
type Index struct {
	// deps maps a module name to its file (relative to the directory) and
	// the files it depends on.
	deps    map[string]depEntry
	byFile  map[string]string // relative path -> name
	aliases []alias
	builtin map[string]bool
}

type depEntry struct {
	file string
	deps []string
}

type alias struct{ pattern, module string }

// Parse reads modules.dep, modules.alias and modules.builtin (alias and
// builtin may be nil).
func Parse(dep, aliases, builtin io.Reader) (*Index, error) {
	ix := &Index{deps: map[string]depEntry{}, byFile: map[string]string{}, builtin: map[string]bool{}}
	err := eachLine(dep, func(l string) error {
		file, rest, ok := strings.Cut(l, ":")
		if !ok || file == "" {
			return fmt.Errorf("kmod: modules.dep: line without a module: %q", l)
		}
		e := depEntry{file: file, deps: strings.Fields(rest)}
		n := Name(file)
		ix.deps[n] = e
		ix.byFile[file] = n
		return nil
	})
	if err != nil {
		return nil, err
	}
	if aliases != nil {
		err = eachLine(aliases, func(l string) error {
			f := strings.Fields(l)
			if len(f) != 3 || f[0] != "alias" {
				return nil // comments and other directives
			}
			ix.aliases = append(ix.aliases, alias{pattern: f[1], module: Name(f[2])})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if builtin != nil {
		err = eachLine(builtin, func(l string) error {
			ix.builtin[Name(l)] = true
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return ix, nil
}

func eachLine(r io.Reader, f func(string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if err := f(l); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("kmod: %w", err)
	}
	return nil
}

// Builtin reports whether the module is built into the kernel.
func (ix *Index) Builtin(name string) bool { return ix.builtin[Name(name)] }

// Has reports whether the module is loadable from the directory.
func (ix *Index) Has(name string) bool { _, ok := ix.deps[Name(name)]; return ok }

// Modules returns the names of all loadable modules, sorted.
func (ix *Index) Modules() []string {
	out := make([]string, 0, len(ix.deps))
	for n := range ix.deps {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// File returns the module's file relative to the directory.
func (ix *Index) File(name string) (string, bool) {
	e, ok := ix.deps[Name(name)]
	return e.file, ok
}

// Order returns the files to load for the named modules, dependencies
// first, each once. Built-in modules are skipped; a module that is neither
// loadable nor built in is an error wrapping ErrUnknown.
func (ix *Index) Order(names ...string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	var visit func(file string, depth int) error
	visit = func(file string, depth int) error {
		if seen[file] {
			return nil
		}
		if depth > 64 {
			return fmt.Errorf("kmod: dependency loop at %s", file)
		}
		seen[file] = true
		n, ok := ix.byFile[file]
		if !ok {
			return fmt.Errorf("%w: %s (a dependency) is not in modules.dep", ErrUnknown, file)
		}
		deps := ix.deps[n].deps
		// modules.dep lists the dependencies to load last first.
		for i := len(deps) - 1; i >= 0; i-- {
			if err := visit(deps[i], depth+1); err != nil {
				return err
			}
		}
		out = append(out, file)
		return nil
	}
	for _, name := range names {
		n := Name(name)
		e, ok := ix.deps[n]
		if !ok {
			if ix.builtin[n] {
				continue
			}
			return nil, fmt.Errorf("%w: %s", ErrUnknown, name)
		}
		if err := visit(e.file, 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Match returns the modules whose alias patterns (shell globs, as
// modules.alias holds them) match a device's modalias, sorted, each once.
// Patterns of modules that are not loadable (built in or absent) are
// skipped.
func (ix *Index) Match(modalias string) []string {
	set := map[string]bool{}
	for _, a := range ix.aliases {
		if set[a.module] || !ix.Has(a.module) {
			continue
		}
		if ok, err := path.Match(a.pattern, modalias); err == nil && ok {
			set[a.module] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Closure returns the files (relative to the directory) of the named
// modules and everything they depend on, sorted: what to copy into an
// initrd. Unknown names are an error; built-in ones are skipped.
func (ix *Index) Closure(names ...string) ([]string, error) {
	files, err := ix.Order(names...)
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	return files, nil
}

// FilterDep returns modules.dep lines for the given files only (as a
// depmod run over just those files would write them), in the order given.
func (ix *Index) FilterDep(files []string) string {
	var b strings.Builder
	for _, f := range files {
		n, ok := ix.byFile[f]
		if !ok {
			continue
		}
		b.WriteString(f + ":")
		for _, d := range ix.deps[n].deps {
			b.WriteString(" " + d)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// FilterAlias returns modules.alias lines for the given modules only.
func (ix *Index) FilterAlias(names []string) string {
	want := map[string]bool{}
	for _, n := range names {
		want[Name(n)] = true
	}
	var b strings.Builder
	for _, a := range ix.aliases {
		if want[a.module] {
			fmt.Fprintf(&b, "alias %s %s\n", a.pattern, a.module)
		}
	}
	return b.String()
}
