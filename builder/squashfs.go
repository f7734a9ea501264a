package builder

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/nbimg/nbimg/internal/atomicfile"
	"github.com/nbimg/nbimg/nixstore"
	"github.com/nbimg/nbimg/squashfs"
)

// SquashfsJob is what `nbimg squashfs` writes: an image of host
// directories (Dirs, as "mksquashfs DIR... OUT") or the store image of a
// closure (Closure).
type SquashfsJob struct {
	Dirs    []string
	Closure *nixstore.Closure
	Options squashfs.Options
	// MkfsTime, when set, is the superblock time; otherwise the newest
	// mtime of the input.
	MkfsTime *int64
	// Logf, when set, receives a line per step.
	Logf func(format string, args ...any)
}

// ErrNothingToWrite is returned for a SquashfsJob with neither Dirs nor a
// Closure, or with both.
var ErrNothingToWrite = errors.New("builder: give directories or a closure, one of the two")

// Squashfs writes the image of j to the file out, replacing it atomically.
// The time rule is mksquashfs's: the superblock gets j.MkfsTime, else the
// newest mtime in the input; a root directory the image makes up (several
// directories, a single non-directory, or a store image) gets the same
// time, as mksquashfs gives it with SOURCE_DATE_EPOCH.
func Squashfs(ctx context.Context, out string, j SquashfsJob) (squashfs.Stats, error) {
	logf := logOrDiscard(j.Logf)
	if (len(j.Dirs) == 0) == (j.Closure == nil) {
		return squashfs.Stats{}, ErrNothingToWrite
	}
	var (
		tree *squashfs.Tree
		err  error
	)
	logf("reading the input tree")
	if j.Closure != nil {
		tree, err = StoreTree(ctx, j.Closure, 0)
	} else {
		tree, err = squashfs.DirTree(ctx, j.Dirs...)
	}
	if err != nil {
		return squashfs.Stats{}, err
	}
	if j.Closure == nil {
		for _, p := range pruneOutput(tree, out) {
			logf("leaving out %s, the output", p)
		}
	}
	mkfs := tree.NewestMtime()
	if j.MkfsTime != nil {
		mkfs = *j.MkfsTime
	}
	if madeUpRoot(j) {
		tree.Root.Mtime = mkfs
	}
	o := j.Options
	o.MkfsTime = time.Unix(mkfs, 0)
	var st squashfs.Stats
	err = atomicfile.Create(out, func(f *os.File) error {
		logf("planning the image (reading files of equal size to find duplicates)")
		p, err := squashfs.NewPlan(ctx, tree, o)
		if err != nil {
			return err
		}
		st, err = p.Write(ctx, f)
		return err
	})
	return st, err
}

// madeUpRoot tells whether the image's root is not a host directory.
func madeUpRoot(j SquashfsJob) bool {
	if j.Closure != nil || len(j.Dirs) != 1 {
		return true
	}
	st, err := os.Lstat(j.Dirs[0])
	return err != nil || !st.IsDir()
}
