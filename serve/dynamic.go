package serve

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// System is a system served in dynamic mode: its artifacts are built on
// the first request for them, and again when Source points elsewhere (a
// profile link that moved).
type System struct {
	// Name is the directory the system's artifacts appear under, and
	// what a machine map's "dir" names to boot it.
	Name string
	// Source is a toplevel store path or a link to one (a profile, a
	// result link); it is resolved on each request.
	Source string
	// Build writes the artifact directory of a toplevel (bzImage, initrd,
	// netboot.ipxe, as nbimg netboot) at dir, replacing what is there.
	Build func(ctx context.Context, toplevel, dir string) error
}

// retryAfter is how long a failed build waits before the next request
// starts it again.
const retryAfter = 30 * time.Second

// dynSystem is a System's build state.
type dynSystem struct {
	System
	mu       sync.Mutex
	built    string // the toplevel the directory holds
	building string // the toplevel being built ("" when idle)
	err      error  // the last build's failure
	failedAt time.Time
}

// ErrBuilding reports a system whose build is under way.
var ErrBuilding = errors.New("serve: the system is being built")

func checkSystems(systems []System, stateDir string) error {
	if len(systems) == 0 {
		return nil
	}
	if stateDir == "" {
		return errors.New("serve: dynamic systems need a state directory for their builds")
	}
	seen := map[string]bool{}
	for _, s := range systems {
		n, err := CleanName(s.Name)
		if err != nil || n != s.Name || strings.Contains(n, "/") || strings.HasPrefix(n, "_") {
			return fmt.Errorf("serve: system name %q: use one plain directory name", s.Name)
		}
		if seen[n] {
			return fmt.Errorf("serve: system %q named twice", n)
		}
		seen[n] = true
		if s.Source == "" || s.Build == nil {
			return fmt.Errorf("serve: system %q needs a source and a build function", n)
		}
	}
	return nil
}

// ensure reports whether the system's artifacts are built for what its
// source points to now; when not, it starts a build (once) in the
// background and returns ErrBuilding, or the last build's error while the
// retry delay runs.
func (s *Server) ensure(name string) error {
	d := s.dyn[name]
	if d == nil {
		return nil // not dynamic
	}
	top, err := filepath.EvalSymlinks(d.Source)
	if err != nil {
		return fmt.Errorf("serve: system %s: %w", name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.built == top:
		return nil
	case d.building != "":
		return ErrBuilding
	case d.err != nil && time.Since(d.failedAt) < retryAfter:
		return d.err
	}
	d.building, d.err = top, nil
	s.builds.Add(1)
	go func() {
		defer s.builds.Done()
		start := time.Now()
		s.log.Info("building", "system", name, "toplevel", top)
		err := d.Build(s.runCtx, top, filepath.Join(s.opts.StateDir, name))
		d.mu.Lock()
		defer d.mu.Unlock()
		d.building = ""
		if err != nil {
			d.err, d.failedAt = fmt.Errorf("serve: building %s: %w", name, err), time.Now()
			s.m.add("nbimg_serve_builds_total", 1, "system", name, "result", "error")
			s.log.Error("build failed", "system", name, "toplevel", top, "duration", time.Since(start), "err", err)
			return
		}
		d.built = top
		s.m.add("nbimg_serve_builds_total", 1, "system", name, "result", "ok")
		s.log.Info("built", "system", name, "toplevel", top, "duration", time.Since(start))
	}()
	return ErrBuilding
}

// dynamicFor returns the dynamic system a served path belongs to ("" for
// none): its first element.
func (s *Server) dynamicFor(name string) string {
	if len(s.dyn) == 0 {
		return ""
	}
	n, err := CleanName(name)
	if err != nil {
		return ""
	}
	first, _, _ := strings.Cut(n, "/")
	if s.dyn[first] != nil {
		return first
	}
	return ""
}

// waitScript is the iPXE script a client gets while its system builds:
// it shows why and asks again.
func waitScript(name string, err error, self string) string {
	msg := "nbimg: building " + name + ", please wait"
	if !errors.Is(err, ErrBuilding) {
		msg = "nbimg: " + oneLine(err.Error()) + " (retrying)"
	}
	return fmt.Sprintf("#!ipxe\necho %s\nsleep 10\nchain %s\n", msg, self)
}

func ensureStateDir(dir string) error {
	if dir == "" {
		return nil
	}
	return os.MkdirAll(dir, 0o755)
}
