package nixstore

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"slices"
	"sync"
)

// refScanner is an io.Writer that looks, as Nix does after a build, for the
// 32-character hash parts of candidate store paths anywhere in a NAR stream
// (file contents, names and symlink targets alike).
type refScanner struct {
	hashes map[string]string // hash part -> store path
	found  map[string]bool   // store paths seen
	carry  []byte            // last hashPartLen-1 bytes of the previous write
	buf    []byte
}

func newRefScanner(hashes map[string]string) *refScanner {
	return &refScanner{hashes: hashes, found: map[string]bool{}}
}

func (s *refScanner) Write(p []byte) (int, error) {
	s.buf = append(append(s.buf[:0], s.carry...), p...)
	b := s.buf
	old := len(s.carry)
	// Test each 32-byte window from its end backwards; a byte that is not a
	// nix32 digit rules out every window holding it, so skip past it. On
	// binary data this looks at few bytes per window.
	inRun := false // the window before i was all digits
	for i := 0; i+hashPartLen <= len(b); {
		if inRun {
			// Only the window's last byte is new.
			if nix32Index[b[i+hashPartLen-1]] < 0 {
				inRun = false
				i += hashPartLen
				continue
			}
		} else {
			j := hashPartLen - 1
			for j >= 0 && nix32Index[b[i+j]] >= 0 {
				j--
			}
			if j >= 0 {
				i += j + 1
				continue
			}
			inRun = true
		}
		// Windows that end in the carried bytes were checked last time.
		if i+hashPartLen > old {
			if sp, ok := s.hashes[string(b[i:i+hashPartLen])]; ok {
				s.found[sp] = true
			}
		}
		i++
	}
	keep := min(len(b), hashPartLen-1)
	s.carry = append(s.carry[:0], b[len(b)-keep:]...)
	return len(p), nil
}

// ScanOptions configures Scan.
type ScanOptions struct {
	StoreDir  string // "" is /nix/store
	StoreRoot string // host directory holding the store directory; "" is /
	Workers   int    // paths serialised at once; 0 is the number of CPUs
	// Progress, when set, is called after each path with the number of
	// paths done, the number known so far and the NAR bytes read.
	Progress func(done, known int, narBytes uint64)
}

// Scan computes the closure of roots without Nix: it serialises each path as
// a NAR for its hash and size and finds its references by looking for the
// hash parts of the store directory's entries in the NAR, following the
// references it finds until no new path turns up. roots are store paths.
//
// Limits: Nix records references when a path is built, scanning only for the
// paths the build could see; Scan considers every entry of the store
// directory, so an unrelated path whose hash happens to be written in a file
// becomes a reference here. Derivers are not known and left empty.
func Scan(ctx context.Context, roots []string, opt ScanOptions) (*Closure, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	storeDir := opt.StoreDir
	if storeDir == "" {
		storeDir = DefaultStoreDir
	}
	root, err := cleanStoreRoot(opt.StoreRoot)
	if err != nil {
		return nil, err
	}
	hashes, err := storeCandidates(storeDir, root)
	if err != nil {
		return nil, err
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	c := &Closure{StoreDir: storeDir, StoreRoot: root}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		info PathInfo
		err  error
	}
	jobs := make(chan string)
	results := make(chan result)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range jobs {
				if ctx.Err() != nil {
					return
				}
				info, err := scanPath(p, c.HostPath(p), hashes)
				select {
				case results <- result{info, err}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	defer func() {
		close(jobs)
		cancel()
		wg.Wait()
	}()

	seen := map[string]bool{}
	var queue []string
	for _, r := range roots {
		if _, err := splitStorePath(r); err != nil {
			return nil, fmt.Errorf("root: %w", err)
		}
		if path.Dir(r) != storeDir {
			return nil, fmt.Errorf("root %s is not in %s", r, storeDir)
		}
		if hashes[hashPart(r)] != r {
			return nil, fmt.Errorf("root %s: %w (looked for %s)", r, ErrMissingPath, c.HostPath(r))
		}
		if !seen[r] {
			seen[r] = true
			queue = append(queue, r)
		}
	}
	inflight := 0
	var narBytes uint64
	for len(queue) > 0 || inflight > 0 {
		var send chan string
		var next string
		if len(queue) > 0 {
			send, next = jobs, queue[0]
		}
		select {
		case send <- next:
			queue = queue[1:]
			inflight++
		case r := <-results:
			inflight--
			if r.err != nil {
				return nil, r.err
			}
			c.Paths = append(c.Paths, r.info)
			narBytes += r.info.NarSize
			for _, ref := range r.info.References {
				if !seen[ref] {
					seen[ref] = true
					queue = append(queue, ref)
				}
			}
			if opt.Progress != nil {
				opt.Progress(len(c.Paths), len(seen), narBytes)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	sortPaths(c.Paths)
	return c, nil
}

// scanPath serialises one store path for its NAR hash, size and references.
func scanPath(storePath, hostPath string, hashes map[string]string) (PathInfo, error) {
	h := sha256.New()
	var n countWriter
	s := newRefScanner(hashes)
	if err := WriteNAR(io.MultiWriter(h, &n, s), hostPath); err != nil {
		return PathInfo{}, fmt.Errorf("serialise %s: %w", storePath, err)
	}
	refs := make([]string, 0, len(s.found))
	for r := range s.found {
		refs = append(refs, r)
	}
	slices.Sort(refs)
	return PathInfo{Path: storePath, NarHash: FormatNarHash(h.Sum(nil)), NarSize: n.n, References: refs}, nil
}

// storeCandidates lists the store directory: hash part -> store path. When
// two entries share a hash part (a path and a leftover "<path>.lock"), the
// bytewise first name wins.
func storeCandidates(storeDir, root string) (map[string]string, error) {
	dir := hostJoin(root, storeDir)
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("store directory: %w", err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("store directory %s: %w", dir, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("store directory %s is empty", dir)
	}
	slices.Sort(names)
	hashes := make(map[string]string, len(names))
	for _, n := range names {
		if validStoreName(n) != "" {
			continue
		}
		if _, dup := hashes[n[:hashPartLen]]; dup {
			continue
		}
		hashes[n[:hashPartLen]] = storeDir + "/" + n
	}
	return hashes, nil
}
