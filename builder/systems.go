package builder

import (
	"context"
	"fmt"

	"github.com/nbimg/nbimg/nixstore"
)

// LoadSystems loads the closures of several NixOS systems, one per
// toplevel, for the commands that put several in one tree (pxe). closures
// holds one closureInfo per toplevel, or one holding them all (each system
// then gets its sub-closure), or none (each closure is computed).
func LoadSystems(ctx context.Context, toplevels, closures []string, storeRoot string) ([]*nixstore.Closure, error) {
	if len(toplevels) == 0 {
		return nil, ErrNoToplevel
	}
	if len(closures) > 1 && len(closures) != len(toplevels) {
		return nil, fmt.Errorf("%d closures for %d systems: give one per system, or one holding them all", len(closures), len(toplevels))
	}
	var systems []*nixstore.Closure
	for i, top := range toplevels {
		in := nixstore.Input{Toplevel: top, StoreRoot: storeRoot}
		if len(closures) > 0 {
			in.Closure = closures[min(i, len(closures)-1)]
		}
		cl, err := nixstore.Load(ctx, in)
		if err != nil {
			return nil, err
		}
		if len(closures) == 1 && len(toplevels) > 1 {
			sub, err := cl.SubClosure(cl.Toplevel.Path)
			if err != nil {
				return nil, fmt.Errorf("closure %s: %w", in.Closure, err)
			}
			sub.Toplevel = cl.Toplevel
			cl = sub
		}
		systems = append(systems, cl)
	}
	return systems, nil
}

// WriteClosure computes the closure of the roots (store paths, or links to
// them) without Nix and writes it as a closureInfo directory at out. logf,
// when set, gets a line per root.
func WriteClosure(ctx context.Context, out string, roots []string, o nixstore.ScanOptions, logf func(string, ...any)) (*nixstore.Closure, error) {
	logf = logOrDiscard(logf)
	var paths []string
	for _, a := range roots {
		p, err := nixstore.ResolveStorePath(a, nixstore.DefaultStoreDir, o.StoreRoot)
		if err != nil {
			return nil, err
		}
		logf("root %s -> %s", a, p)
		paths = append(paths, p)
	}
	cl, err := nixstore.Scan(ctx, paths, o)
	if err != nil {
		return nil, err
	}
	if err := nixstore.WriteClosureInfo(out, cl); err != nil {
		return nil, err
	}
	return cl, nil
}
