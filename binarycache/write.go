package binarycache

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/nbimg/nbimg/internal/atomicfile"
	"github.com/nbimg/nbimg/nixstore"
)

// DefaultStoreDir is the store directory of every NixOS system.
const DefaultStoreDir = nixstore.DefaultStoreDir

// DefaultPriority is the nix-cache-info Priority of a new cache: tried
// before cache.nixos.org (40) by clients that list both.
const DefaultPriority = 30

// ManifestVersion is the version of manifest.json's layout.
const ManifestVersion = 1

// Path is one store path to put in the cache.
type Path struct {
	StorePath  string   // full store path, storeDir/<hash>-<name>
	HostPath   string   // where its files are on this machine; "" is StorePath
	NarHash    string   // sha256 of its NAR as the registration gives it; "" is not checked
	NarSize    uint64   // its NAR size; 0 is not checked
	References []string // full store paths it refers to (may include itself)
	Deriver    string   // full store path of its .drv, or ""
}

// NARWriter writes the NAR serialisation of the file tree at hostPath to w.
type NARWriter func(w io.Writer, hostPath string) error

// Options configures Write.
type Options struct {
	StoreDir    string      // "" is /nix/store
	Compression Compression // "" is xz
	Level       int         // zstd level 1..22; 0 is DefaultZstdLevel
	Keys        []SecretKey // each narinfo gets a Sig line per key
	Workers     int         // NARs compressed at once; 0 is the number of CPUs
	Priority    int         // Priority of a new nix-cache-info; 0 is DefaultPriority
	WriteNAR    NARWriter   // the NAR serialiser; nil is nixstore.WriteNAR
	// Progress, when set, is called after each path, in input order.
	Progress func(Progress)
	// Logf, when set, receives a line about each unusual path.
	Logf func(format string, args ...any)
}

// Progress counts what Write has done so far.
type Progress struct {
	Paths, TotalPaths int    // paths handled (kept or added) and in total
	Added             int    // paths whose NAR was written
	NarBytes          uint64 // NAR bytes serialised
	FileBytes         uint64 // compressed bytes written
}

// Manifest is what Write did, written as manifest.json in the cache. It
// holds no times, so the same run on the same cache gives the same bytes.
type Manifest struct {
	ManifestVersion int            `json:"manifest_version"`
	StoreDir        string         `json:"store_dir"`
	Compression     string         `json:"compression"`
	ZstdEncoder     string         `json:"zstd_encoder,omitempty"`
	ZstdLevel       int            `json:"zstd_level,omitempty"`
	Keys            []string       `json:"keys"`        // public keys that signed
	Paths           int            `json:"store_paths"` // in the closure given
	Kept            int            `json:"kept"`        // already in the cache
	Resigned        []string       `json:"resigned"`    // kept paths that gained a signature
	Added           []ManifestPath `json:"added"`       // new paths, in input order
	AddedNarSize    uint64         `json:"added_nar_size"`
	AddedFileSize   uint64         `json:"added_file_size"`
}

// ManifestPath is one path Write added.
type ManifestPath struct {
	StorePath string `json:"store_path"`
	NarInfo   string `json:"narinfo"` // file name in the cache
	URL       string `json:"url"`
	NarHash   string `json:"nar_hash"`
	NarSize   uint64 `json:"nar_size"`
	FileSize  uint64 `json:"file_size"`
}

// ErrIncomplete is wrapped when a path refers to one that is neither given
// nor already in the cache: a client could not substitute it.
var ErrIncomplete = errors.New("binarycache: closure incomplete")

// ErrChanged is wrapped when a path's NAR differs from its registration.
var ErrChanged = errors.New("binarycache: store path differs from its registration")

// Write puts paths (a closure) into the binary cache at dir, creating it
// when absent, and writes dir/manifest.json. See the package comment.
func Write(ctx context.Context, dir string, paths []Path, opts Options) (*Manifest, error) {
	w, err := newWriter(dir, paths, opts)
	if err != nil {
		return nil, err
	}
	return w.run(ctx)
}

type entry struct {
	Path
	info   *NarInfo // existing or new narinfo
	add    bool     // the NAR must be written
	resign bool     // an existing narinfo gains signatures
}

type writer struct {
	dir     string
	opts    Options
	entries []*entry
	byPath  map[string]*entry
	logf    func(string, ...any)
}

func newWriter(dir string, paths []Path, opts Options) (*writer, error) {
	if opts.WriteNAR == nil {
		opts.WriteNAR = nixstore.WriteNAR
	}
	if opts.StoreDir == "" {
		opts.StoreDir = DefaultStoreDir
	}
	c, err := ParseCompression(string(opts.Compression))
	if err != nil {
		return nil, err
	}
	opts.Compression = c
	if c == Zstd && opts.Level == 0 {
		opts.Level = DefaultZstdLevel
	}
	if c != Zstd && opts.Level != 0 {
		return nil, fmt.Errorf("binarycache: a level is only for zstd, not %s", c)
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.NumCPU()
	}
	if opts.Priority == 0 {
		opts.Priority = DefaultPriority
	}
	names := map[string]bool{}
	for _, k := range opts.Keys {
		if names[k.Name] {
			return nil, fmt.Errorf("binarycache: two signing keys are named %s", k.Name)
		}
		names[k.Name] = true
	}
	w := &writer{dir: dir, opts: opts, byPath: map[string]*entry{}, logf: opts.Logf}
	if w.logf == nil {
		w.logf = func(string, ...any) {}
	}
	for _, p := range paths {
		if err := checkStorePath(p.StorePath, opts.StoreDir); err != nil {
			return nil, fmt.Errorf("binarycache: %w", err)
		}
		if w.byPath[p.StorePath] != nil {
			return nil, fmt.Errorf("binarycache: %s is given twice", p.StorePath)
		}
		for _, r := range p.References {
			if err := checkStorePath(r, opts.StoreDir); err != nil {
				return nil, fmt.Errorf("binarycache: reference of %s: %w", p.StorePath, err)
			}
		}
		if p.Deriver != "" {
			if err := checkStorePath(p.Deriver, opts.StoreDir); err != nil {
				return nil, fmt.Errorf("binarycache: deriver of %s: %w", p.StorePath, err)
			}
		}
		if p.NarHash != "" {
			h, err := normaliseHash(p.NarHash)
			if err != nil {
				return nil, fmt.Errorf("binarycache: NAR hash of %s: %w", p.StorePath, err)
			}
			p.NarHash = h
		}
		if p.HostPath == "" {
			p.HostPath = p.StorePath
		}
		e := &entry{Path: p}
		w.entries = append(w.entries, e)
		w.byPath[p.StorePath] = e
	}
	return w, nil
}

func (w *writer) run(ctx context.Context) (*Manifest, error) {
	if err := os.MkdirAll(filepath.Join(w.dir, "nar"), 0o755); err != nil {
		return nil, fmt.Errorf("binary cache: %w", err)
	}
	if err := w.cacheInfo(); err != nil {
		return nil, err
	}
	for _, e := range w.entries {
		if err := w.examine(e); err != nil {
			return nil, err
		}
	}
	if err := w.checkComplete(); err != nil {
		return nil, err
	}
	if err := w.writeNARs(ctx); err != nil {
		return nil, err
	}
	for _, e := range w.topological() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !e.add && !e.resign {
			continue
		}
		name := filepath.Join(w.dir, e.info.HashPart()+".narinfo")
		if err := atomicfile.WriteFile(name, e.info.Bytes()); err != nil {
			return nil, err
		}
	}
	m := w.manifest()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(w.dir, "manifest.json"), append(b, '\n')); err != nil {
		return nil, err
	}
	return m, nil
}

// cacheInfo writes nix-cache-info in a new cache, or checks an existing
// one's store directory.
func (w *writer) cacheInfo() error {
	name := filepath.Join(w.dir, "nix-cache-info")
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		ci := CacheInfo{StoreDir: w.opts.StoreDir, WantMassQuery: true, Priority: w.opts.Priority}
		return atomicfile.WriteFile(name, ci.Bytes())
	}
	if err != nil {
		return fmt.Errorf("binary cache: %w", err)
	}
	ci, err := ParseCacheInfo(data)
	if err != nil {
		return fmt.Errorf("binary cache %s: %w", w.dir, err)
	}
	if ci.StoreDir != w.opts.StoreDir {
		return fmt.Errorf("binary cache %s is for the store %s, not %s: use another directory", w.dir, ci.StoreDir, w.opts.StoreDir)
	}
	return nil
}

// examine decides what to do with e from the narinfo already in the cache.
func (w *writer) examine(e *entry) error {
	hp := path.Base(e.StorePath)[:hashPartLen]
	name := filepath.Join(w.dir, hp+".narinfo")
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		e.add = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("binary cache: %w", err)
	}
	old, err := ParseNarInfo(data, w.opts.StoreDir)
	if err != nil {
		w.logf("%s: replacing an unreadable narinfo: %v", name, err)
		e.add = true
		return nil
	}
	if old.StorePath != e.StorePath {
		w.logf("%s: replacing the narinfo of %s, which has the same hash part", name, old.StorePath)
		e.add = true
		return nil
	}
	if !localURL(old.URL) {
		w.logf("%s: replacing a narinfo whose URL %q is not a file in this cache", name, old.URL)
		e.add = true
		return nil
	}
	if _, err := os.Stat(filepath.Join(w.dir, filepath.FromSlash(old.URL))); err != nil {
		w.logf("%s: rewriting %s, whose NAR file is missing (%v)", name, e.StorePath, err)
		e.add = true
		return nil
	}
	e.info = old
	same := (e.NarHash == "" || e.NarHash == old.NarHash) && (e.NarSize == 0 || e.NarSize == old.NarSize) &&
		slices.Equal(baseNames(e.References), old.References)
	if !same {
		w.logf("%s: kept, but the cache's copy differs from this store's (NAR hash %s, here %s): the cache serves its own", e.StorePath, old.NarHash, e.NarHash)
		return nil
	}
	for _, k := range w.opts.Keys {
		if !old.SignedBy(k.Public()) {
			old.Sign(k)
			e.resign = true
		}
	}
	return nil
}

// localURL reports whether u names a file below nar/ of the cache.
func localURL(u string) bool {
	return strings.HasPrefix(u, "nar/") && path.Clean(u) == u && !strings.Contains(u, "..") && !strings.ContainsAny(u, ":?#\\")
}

// checkComplete checks that every reference is given or in the cache.
func (w *writer) checkComplete() error {
	for _, e := range w.entries {
		for _, r := range e.References {
			if w.byPath[r] != nil {
				continue
			}
			name := filepath.Join(w.dir, path.Base(r)[:hashPartLen]+".narinfo")
			if _, err := os.Stat(name); err != nil {
				return fmt.Errorf("%w: %s refers to %s, which is neither in the closure nor in the cache %s", ErrIncomplete, e.StorePath, r, w.dir)
			}
		}
	}
	return nil
}

type narResult struct {
	info *NarInfo
	err  error
	done chan struct{}
}

// writeNARs writes the NAR files of the entries to add, Workers at a
// time, and takes the results in input order.
func (w *writer) writeNARs(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var todo []*entry
	for _, e := range w.entries {
		if e.add {
			todo = append(todo, e)
		}
	}
	results := make([]narResult, len(todo))
	for i := range results {
		results[i].done = make(chan struct{})
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(w.opts.Workers, max(len(todo), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				results[i].info, results[i].err = w.writeNAR(ctx, todo[i])
				close(results[i].done)
			}
		}()
	}
	go func() {
		defer close(jobs)
		for i := range todo {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	// On an error, stop the feeder and the NARs under way, then wait.
	defer func() {
		cancel()
		wg.Wait()
	}()

	p := Progress{TotalPaths: len(w.entries), Paths: len(w.entries) - len(todo)}
	for i, e := range todo {
		select {
		case <-results[i].done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := results[i].err; err != nil {
			return err
		}
		e.info = results[i].info
		p.Paths++
		p.Added++
		p.NarBytes += e.info.NarSize
		p.FileBytes += e.info.FileSize
		if w.opts.Progress != nil {
			w.opts.Progress(p)
		}
	}
	return nil
}

// ctxWriter fails writes once ctx is done, so a long NAR stops early.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

type countingHash struct {
	hash.Hash
	n uint64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += uint64(len(p))
	return c.Hash.Write(p)
}

// writeNAR serialises and compresses one path into nar/ and returns its
// narinfo, signed. The file's name is its hash, known only at the end, so
// it is written to a temporary name in nar/ and renamed (as atomicfile
// does for names known in advance).
func (w *writer) writeNAR(ctx context.Context, e *entry) (info *NarInfo, err error) {
	narDir := filepath.Join(w.dir, "nar")
	f, err := os.CreateTemp(narDir, ".tmp-")
	if err != nil {
		return nil, fmt.Errorf("binary cache: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	file := &countingHash{Hash: sha256.New()}
	bw := bufio.NewWriterSize(f, 256<<10)
	cw, err := w.opts.Compression.compressor(io.MultiWriter(bw, file), w.opts.Level)
	if err != nil {
		return nil, err
	}
	nar := &countingHash{Hash: sha256.New()}
	if err := w.opts.WriteNAR(ctxWriter{ctx, io.MultiWriter(cw, nar)}, e.HostPath); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("NAR of %s: %w", e.StorePath, err)
	}
	if err := cw.Close(); err != nil {
		return nil, fmt.Errorf("compressing the NAR of %s: %w", e.StorePath, err)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("binary cache: %w", err)
	}
	narHash := sha256Field(nar.Sum(nil))
	if e.NarHash != "" && narHash != e.NarHash || e.NarSize != 0 && nar.n != e.NarSize {
		return nil, fmt.Errorf("%w: %s (at %s) has NAR hash %s and size %d, the registration says %s and %d: rebuild or repair the store (nix-store --verify --check-contents)",
			ErrChanged, e.StorePath, e.HostPath, narHash, nar.n, e.NarHash, e.NarSize)
	}
	fileSum := file.Sum(nil)
	url := "nar/" + nixstore.Nix32Encode(fileSum) + w.opts.Compression.Ext()
	if err := f.Chmod(0o644); err != nil {
		return nil, fmt.Errorf("binary cache: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("binary cache: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("binary cache: %w", err)
	}
	// A file of this name has this content: its name is its hash.
	if err := os.Rename(f.Name(), filepath.Join(w.dir, filepath.FromSlash(url))); err != nil {
		return nil, fmt.Errorf("binary cache: %w", err)
	}
	info = &NarInfo{
		StorePath:   e.StorePath,
		URL:         url,
		Compression: string(w.opts.Compression),
		FileHash:    sha256Field(fileSum),
		FileSize:    file.n,
		NarHash:     narHash,
		NarSize:     nar.n,
		References:  baseNames(e.References),
	}
	if e.Deriver != "" {
		info.Deriver = path.Base(e.Deriver)
	}
	for _, k := range w.opts.Keys {
		info.Sign(k)
	}
	return info, nil
}

// topological returns the entries with every path after the paths it
// refers to, otherwise in input order.
func (w *writer) topological() []*entry {
	out := make([]*entry, 0, len(w.entries))
	state := map[*entry]int{} // 1 visiting, 2 done
	var visit func(e *entry)
	visit = func(e *entry) {
		if state[e] != 0 {
			return // done, or a cycle (only self-references happen in Nix)
		}
		state[e] = 1
		for _, r := range sortedCopy(e.References) {
			if d := w.byPath[r]; d != nil {
				visit(d)
			}
		}
		state[e] = 2
		out = append(out, e)
	}
	for _, e := range w.entries {
		visit(e)
	}
	return out
}

func (w *writer) manifest() *Manifest {
	m := &Manifest{
		ManifestVersion: ManifestVersion,
		StoreDir:        w.opts.StoreDir,
		Compression:     string(w.opts.Compression),
		Keys:            []string{},
		Paths:           len(w.entries),
		Resigned:        []string{},
		Added:           []ManifestPath{},
	}
	if w.opts.Compression == Zstd {
		m.ZstdEncoder, m.ZstdLevel = ZstdEncoder, w.opts.Level
	}
	for _, k := range w.opts.Keys {
		m.Keys = append(m.Keys, k.Public().String())
	}
	for _, e := range w.entries {
		switch {
		case e.add:
			m.Added = append(m.Added, ManifestPath{
				StorePath: e.StorePath, NarInfo: e.info.HashPart() + ".narinfo", URL: e.info.URL,
				NarHash: e.info.NarHash, NarSize: e.info.NarSize, FileSize: e.info.FileSize,
			})
			m.AddedNarSize += e.info.NarSize
			m.AddedFileSize += e.info.FileSize
		case e.resign:
			m.Resigned = append(m.Resigned, e.StorePath)
			m.Kept++
		default:
			m.Kept++
		}
	}
	return m
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = path.Base(p)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
