// Package cachecheck checks Nix binary caches with real Nix, for nbimg's
// tests and for anyone who wants to see a cache work before pointing
// clients at it: it serves a cache directory with python's http.server on
// 127.0.0.1 and records each request, substitutes store paths from a cache
// into a fresh chroot store (`nix-store --realise --store local?root=DIR`)
// with signatures required, checks them with `nix-store --verify
// --check-contents`, and writes Nix's own cache with `nix copy` for
// comparison.
//
// Limits: it runs the Nix found in PATH (tested with Nix 2.8) as a user
// allowed to use a chroot store without a daemon; the HTTP server is
// python3's, bound to 127.0.0.1 only.
package cachecheck

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Client is a chroot Nix store that substitutes from one cache.
type Client struct {
	NixStore    string   // nix-store program; "" is nix-store from PATH
	Root        string   // the store lives in Root/nix/store, its database in Root/nix/var
	Substituter string   // the cache's URL: http://..., file:///...
	TrustedKeys []string // trusted-public-keys; signatures are always required
}

func (c *Client) args(extra ...string) []string {
	return append([]string{
		"--store", "local?root=" + c.Root,
		"--option", "substituters", c.Substituter,
		"--option", "require-sigs", "true",
		"--option", "trusted-public-keys", strings.Join(c.TrustedKeys, " "),
		// Nothing else to try: a path the cache cannot give fails.
		"--option", "fallback", "false",
		"--option", "connect-timeout", "5",
	}, extra...)
}

func (c *Client) run(ctx context.Context, args ...string) (string, error) {
	prog := c.NixStore
	if prog == "" {
		prog = "nix-store"
	}
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = append(os.Environ(), "NIX_REMOTE=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("nix-store %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Realise substitutes paths (and their closure) into the client's store.
// The output is nix-store's, stdout and stderr.
func (c *Client) Realise(ctx context.Context, paths ...string) (string, error) {
	return c.run(ctx, c.args(append([]string{"--realise"}, paths...)...)...)
}

// Verify runs `nix-store --verify --check-contents` on the client's store:
// every valid path's contents must hash to its registered NAR hash.
func (c *Client) Verify(ctx context.Context) (string, error) {
	out, err := c.run(ctx, "--store", "local?root="+c.Root, "--verify", "--check-contents")
	if err != nil {
		return out, err
	}
	// Nix 2.8 reports bad contents on stderr and exits 0 unless --repair.
	for _, bad := range []string{"was modified!", "is corrupt", "error:"} {
		if strings.Contains(out, bad) {
			return out, fmt.Errorf("nix-store --verify --check-contents in %s: %s", c.Root, strings.TrimSpace(out))
		}
	}
	return out, nil
}

// Valid lists the store paths the client's database holds.
func (c *Client) Valid(ctx context.Context, roots ...string) ([]string, error) {
	out, err := c.run(ctx, append([]string{"--store", "local?root=" + c.Root, "--query", "--requisites"}, roots...)...)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// NixCopy writes Nix's own binary cache of paths (from the host's store)
// to dir with `nix copy --to file://DIR?compression=C&secret-key=K`.
// secretKeyFile may be "".
func NixCopy(ctx context.Context, dir, compression, secretKeyFile string, paths ...string) error {
	url := "file://" + dir + "?compression=" + compression
	if secretKeyFile != "" {
		url += "&secret-key=" + secretKeyFile
	}
	args := append([]string{"--extra-experimental-features", "nix-command", "copy", "--to", url}, paths...)
	out, err := exec.CommandContext(ctx, "nix", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nix %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// GenerateKey runs `nix-store --generate-binary-cache-key name` and
// returns the secret and public key files it wrote in dir.
func GenerateKey(ctx context.Context, dir, name string) (secret, public string, err error) {
	secret, public = filepath.Join(dir, name+".secret"), filepath.Join(dir, name+".public")
	out, err := exec.CommandContext(ctx, "nix-store", "--generate-binary-cache-key", name, secret, public).CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("nix-store --generate-binary-cache-key: %w\n%s", err, out)
	}
	return secret, public, nil
}

// Server is python3's http.server serving one directory on 127.0.0.1.
type Server struct {
	URL string // http://127.0.0.1:PORT

	cmd     *exec.Cmd
	readers sync.WaitGroup // the stdout and stderr readers
	mu      sync.Mutex
	log     []Request
	rest    bytes.Buffer // lines that are not requests
}

// Request is one line of the server's log.
type Request struct {
	Method, Path string
	Status       int
}

// requestLine matches http.server's log: `127.0.0.1 - - [date] "GET /p HTTP/1.1" 200 -`.
var requestLine = regexp.MustCompile(`^127\.0\.0\.1 - - \[[^]]*\] "([A-Z]+) (\S+) HTTP/[0-9.]+" ([0-9]{3}) `)

// Serve starts `python3 -m http.server` on a free port of 127.0.0.1 with
// dir as its root. Close stops it.
func Serve(ctx context.Context, python3, dir string) (*Server, error) {
	cmd := exec.CommandContext(ctx, python3, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir, "0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting http.server: %w", err)
	}
	s := &Server{cmd: cmd}
	s.readers.Add(2)
	go s.readLog(stderr)
	port := make(chan string, 1)
	go func() {
		defer s.readers.Done()
		sc := bufio.NewScanner(stdout)
		re := regexp.MustCompile(`port ([0-9]+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				port <- m[1]
				break
			}
		}
		close(port)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case p, ok := <-port:
		if !ok {
			s.Close()
			return nil, fmt.Errorf("http.server did not say its port: %s", s.Other())
		}
		s.URL = "http://127.0.0.1:" + p
	case <-time.After(30 * time.Second):
		s.Close()
		return nil, errors.New("http.server did not start within 30 s")
	}
	return s, nil
}

func (s *Server) readLog(r io.Reader) {
	defer s.readers.Done()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l := sc.Text()
		s.mu.Lock()
		if m := requestLine.FindStringSubmatch(l); m != nil {
			var st int
			fmt.Sscan(m[3], &st)
			s.log = append(s.log, Request{Method: m[1], Path: m[2], Status: st})
		} else {
			s.rest.WriteString(l + "\n")
		}
		s.mu.Unlock()
	}
}

// Requests returns the requests served so far and forgets them.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.log
	s.log = nil
	return r
}

// Other returns the log lines that were not requests.
func (s *Server) Other() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rest.String()
}

// Close stops the server.
func (s *Server) Close() error {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
	}
	s.readers.Wait()
	err := s.cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return nil // killed
	}
	return err
}

// NarFetches counts the NAR files among requests that succeeded.
func NarFetches(reqs []Request) int {
	n := 0
	for _, r := range reqs {
		if r.Method == "GET" && r.Status == 200 && strings.HasPrefix(r.Path, "/nar/") {
			n++
		}
	}
	return n
}
