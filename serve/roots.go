package serve

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
)

// ErrBadPath is returned for a name that is not a plain relative path
// inside the roots (it holds "..", a NUL or an empty element).
var ErrBadPath = errors.New("serve: path outside the served roots")

// roots are the served directories, searched in order. Each is an
// os.Root: names are resolved inside it, symbolic links included, so
// nothing outside can be reached.
type roots struct {
	dirs []string
	rs   []*os.Root

	// archs remembers fileArch's answers and ukis findFor's finds, so a
	// DHCP request (which anyone on the LAN can send) reads manifests, PE
	// headers and directories once per loaded state (SIGHUP loads anew),
	// not once per packet. Both are bounded: archs by the files the
	// boot-file lists name, ukis by the architectures.
	mu    sync.Mutex
	archs map[string]string
	ukis  map[string]string
}

func openRoots(dirs []string) (*roots, error) {
	r := &roots{dirs: dirs}
	for _, d := range dirs {
		root, err := os.OpenRoot(d)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("serve: opening %s: %w", d, err)
		}
		r.rs = append(r.rs, root)
	}
	return r, nil
}

func (r *roots) close() {
	for _, root := range r.rs {
		root.Close()
	}
}

// CleanName turns a client's file name into a path relative to the roots:
// leading slashes (and a TFTP client's backslashes) are dropped; a name
// with a ".." element, a NUL or nothing left is refused with ErrBadPath.
// An absolute name therefore means the same file inside the roots, never
// one outside.
func CleanName(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w: %q", ErrBadPath, name)
	}
	name = strings.ReplaceAll(name, "\\", "/")
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w: %q", ErrBadPath, name)
		}
	}
	name = strings.TrimLeft(path.Clean("/"+name), "/")
	if name == "" || !fs.ValidPath(name) {
		return "", fmt.Errorf("%w: %q", ErrBadPath, name)
	}
	return name, nil
}

// open opens a regular file by its cleaned name in the first root that
// has it.
func (r *roots) open(name string) (*os.File, fs.FileInfo, error) {
	name, err := CleanName(name)
	if err != nil {
		return nil, nil, err
	}
	for _, root := range r.rs {
		f, err := root.Open(name)
		if err != nil {
			continue
		}
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			f.Close()
			continue
		}
		return f, st, nil
	}
	return nil, nil, fmt.Errorf("serve: %s: %w", name, fs.ErrNotExist)
}

// exists reports whether a regular file is found under name.
func (r *roots) exists(name string) bool {
	name, err := CleanName(name)
	return err == nil && r.which(name) >= 0
}

// which returns the index of the first root with a regular file at the
// cleaned name, or -1.
func (r *roots) which(name string) int {
	for i, root := range r.rs {
		if st, err := root.Stat(name); err == nil && st.Mode().IsRegular() {
			return i
		}
	}
	return -1
}

// first returns the first of names (each joined to dir) that exists.
func (r *roots) first(dir string, names ...string) (string, bool) {
	return r.firstFor("", dir, names...)
}

// firstFor is first for a client of the architecture arch: a UKI name
// (UKINames) counts only when the file is for arch (fileArch). With arch
// "" every name counts.
func (r *roots) firstFor(arch, dir string, names ...string) (string, bool) {
	for _, n := range names {
		p := n
		if dir != "" {
			p = path.Join(dir, n)
		}
		if r.exists(p) && (arch == "" || !archNamed(n) || r.fileArch(p) == arch) {
			return p, true
		}
	}
	return "", false
}

// findFor searches the directories under the roots (as find does, up to
// depth deep) for a UKI of the architecture arch, in UKINames order.
func (r *roots) findFor(arch string, depth int) (string, bool) {
	r.mu.Lock()
	p, ok := r.ukis[arch]
	r.mu.Unlock()
	if ok {
		return p, true
	}
	p, ok = r.searchFor(arch, depth)
	if ok {
		// Only finds are kept: dynamic mode may build a system under
		// the roots later.
		r.mu.Lock()
		if r.ukis == nil {
			r.ukis = map[string]string{}
		}
		r.ukis[arch] = p
		r.mu.Unlock()
	}
	return p, ok
}

// searchFor is findFor without the memory. A pxe tree's manifest.json
// names the UKI each client architecture boots (clients[].boot_file, the
// file its dnsmasq.conf gives), so those come first; then any UKI of arch.
func (r *roots) searchFor(arch string, depth int) (string, bool) {
	for _, m := range r.find("manifest.json", depth, maxUKISearch) {
		i := r.which(m)
		if i < 0 {
			continue
		}
		man, ok := readManifestArch(r, i, m)
		if !ok {
			continue
		}
		for _, c := range man.Clients {
			p, err := CleanName(path.Join(path.Dir(m), c.BootFile))
			if c.Arch == arch && c.BootFile != "" && err == nil && archNamed(p) && r.exists(p) && r.fileArch(p) == arch {
				return p, true
			}
		}
	}
	for _, n := range UKINames {
		for _, p := range r.find(n, depth, maxUKISearch) {
			if r.fileArch(p) == arch {
				return p, true
			}
		}
	}
	return "", false
}

// maxUKISearch bounds the UKIs findFor looks at per name.
const maxUKISearch = 64

// find walks the roots (not following symbolic links out of them) for
// regular files named base, up to depth directories deep, in root order
// and then lexical order; at most limit results.
func (r *roots) find(base string, depth, limit int) []string {
	var out []string
	seen := map[string]bool{}
	for _, root := range r.rs {
		fsys := root.FS()
		fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error { //nolint:errcheck // best effort listing
			if err != nil {
				return fs.SkipDir
			}
			if len(out) >= limit {
				return fs.SkipAll
			}
			if d.IsDir() && p != "." && strings.Count(p, "/") >= depth {
				return fs.SkipDir
			}
			if d.Type().IsRegular() && d.Name() == base && !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}
