package builder

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nbimg/nbimg/binarycache"
	"github.com/nbimg/nbimg/nixstore"
)

// BinaryCacheOptions configure BinaryCache.
type BinaryCacheOptions struct {
	Compression binarycache.Compression // "" is xz
	Level       int                     // zstd level; 0 is binarycache.DefaultZstdLevel
	Keys        []binarycache.SecretKey // each narinfo gets a Sig line per key
	Workers     int                     // NARs compressed at once; 0 is the number of CPUs
	Priority    int                     // of a new cache's nix-cache-info; 0 is binarycache.DefaultPriority
	Progress    func(binarycache.Progress)
	// Logf, when set, receives a line per unusual path.
	Logf func(format string, args ...any)
}

// ErrNoClosure is returned by BinaryCache without a closure.
var ErrNoClosure = errors.New("builder: no closure given: pass --toplevel or --closure")

// BinaryCache puts the union of the closures into the Nix binary cache at
// dir (see package binarycache): paths already there are kept, the others
// are added, so one directory serves every generation. Two closures that
// list the same path must agree on it.
func BinaryCache(ctx context.Context, closures []*nixstore.Closure, dir string, o BinaryCacheOptions) (*binarycache.Manifest, error) {
	paths, err := CachePaths(closures)
	if err != nil {
		return nil, err
	}
	return binarycache.Write(ctx, dir, paths, binarycache.Options{
		StoreDir:    closures[0].StoreDir,
		Compression: o.Compression,
		Level:       o.Level,
		Keys:        o.Keys,
		Workers:     o.Workers,
		Priority:    o.Priority,
		WriteNAR:    nixstore.WriteNAR,
		Progress:    o.Progress,
		Logf:        o.Logf,
	})
}

// CachePaths merges closures into the paths of a binary cache, sorted by
// store path, each read from its closure's store.
func CachePaths(closures []*nixstore.Closure) ([]binarycache.Path, error) {
	if len(closures) == 0 {
		return nil, ErrNoClosure
	}
	byPath := map[string]binarycache.Path{}
	for _, c := range closures {
		if c.StoreDir != closures[0].StoreDir {
			return nil, fmt.Errorf("closures of two store directories, %s and %s, cannot share a binary cache", closures[0].StoreDir, c.StoreDir)
		}
		for _, p := range c.Paths {
			bp := binarycache.Path{
				StorePath:  p.Path,
				HostPath:   c.HostPath(p.Path),
				NarHash:    p.NarHash,
				NarSize:    p.NarSize,
				References: p.References,
				Deriver:    p.Deriver,
			}
			if old, ok := byPath[p.Path]; ok {
				if old.NarHash != bp.NarHash || old.NarSize != bp.NarSize || !slices.Equal(old.References, bp.References) {
					return nil, fmt.Errorf("two closures disagree on %s (NAR hash %s and %s): they come from different stores", p.Path, old.NarHash, bp.NarHash)
				}
				if old.Deriver != "" {
					bp.Deriver = old.Deriver
				}
			}
			byPath[p.Path] = bp
		}
	}
	out := make([]binarycache.Path, 0, len(byPath))
	for _, p := range byPath {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b binarycache.Path) int {
		switch {
		case a.StorePath < b.StorePath:
			return -1
		case a.StorePath > b.StorePath:
			return 1
		}
		return 0
	})
	return out, nil
}

// LoadCacheClosures loads what `nbimg binary-cache` is given: with
// toplevels, their closures as LoadSystems reads them (closures then pair
// with them); without, each closureInfo in closures on its own.
func LoadCacheClosures(ctx context.Context, toplevels, closures []string, storeRoot string) ([]*nixstore.Closure, error) {
	if len(toplevels) > 0 {
		return LoadSystems(ctx, toplevels, closures, storeRoot)
	}
	if len(closures) == 0 {
		return nil, ErrNoClosure
	}
	var out []*nixstore.Closure
	for _, c := range closures {
		cl, err := nixstore.Load(ctx, nixstore.Input{Closure: c, StoreRoot: storeRoot})
		if err != nil {
			return nil, err
		}
		out = append(out, cl)
	}
	return out, nil
}
