package nixstore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/nbimg/nbimg/internal/atomicfile"
)

// ClosureInfoFiles returns the files of a nixpkgs closureInfo directory for
// c, by name: store-paths, registration and total-nar-size.
func (c *Closure) ClosureInfoFiles() map[string][]byte {
	return map[string][]byte{
		"store-paths":    c.StorePaths(),
		"registration":   c.Registration(),
		"total-nar-size": []byte(strconv.FormatUint(c.NarSize(), 10) + "\n"),
	}
}

// closureInfoNames are the files of a closureInfo directory.
var closureInfoNames = []string{"registration", "store-paths", "total-nar-size"}

// WriteClosureInfo writes c as a closureInfo directory at dir, replacing
// an existing one whole (see atomicfile.ReplaceDir): dir holds the old
// closure or the new one, never a mix. An existing dir holding anything
// but closureInfo's files is refused rather than replaced.
func WriteClosureInfo(dir string, c *Closure) error {
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if !slices.Contains(closureInfoNames, e.Name()) {
				return fmt.Errorf("closure info: %s holds %s, which is not a closureInfo file: give a new or closureInfo directory", dir, e.Name())
			}
		}
	}
	files := c.ClosureInfoFiles()
	return atomicfile.ReplaceDir(dir, func(tmp string) error {
		for _, n := range closureInfoNames {
			if err := os.WriteFile(filepath.Join(tmp, n), files[n], 0o644); err != nil {
				return fmt.Errorf("closure info: %w", err)
			}
		}
		return nil
	})
}
