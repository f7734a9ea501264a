package nixstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// errNoNixStore means nix-store is not installed or not usable here.
var errNoNixStore = errors.New("nix-store not available")

// errNotValid means the Nix database does not know a root (a store copied
// in without registering it).
var errNotValid = errors.New("not valid in the Nix database")

// queryClosure computes the closure of roots: from the Nix database with
// nix-store when it is installed, the store is the host's and the database
// knows the roots; otherwise with Scan.
func queryClosure(ctx context.Context, roots []string, root string) (*Closure, error) {
	if root == "" {
		c, err := NixStoreClosure(ctx, roots)
		if err == nil || !errors.Is(err, errNoNixStore) && !errors.Is(err, errNotValid) {
			return c, err
		}
	}
	return Scan(ctx, roots, ScanOptions{StoreRoot: root})
}

// NixStoreClosure asks Nix for the closure of roots with
// `nix-store --query --requisites` and reads its registration with
// `nix-store --dump-db`.
func NixStoreClosure(ctx context.Context, roots []string) (*Closure, error) {
	if nixStoreProgram == "" {
		return nil, errNoNixStore
	}
	prog, err := exec.LookPath(nixStoreProgram)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoNixStore, err)
	}
	out, err := runNixStore(ctx, prog, append([]string{"--query", "--requisites"}, roots...))
	if err != nil {
		return nil, err
	}
	paths := strings.Fields(string(out))
	if len(paths) == 0 {
		return nil, fmt.Errorf("nix-store --query --requisites %s listed no paths", strings.Join(roots, " "))
	}
	db, err := runNixStore(ctx, prog, append([]string{"--dump-db"}, paths...))
	if err != nil {
		return nil, err
	}
	infos, err := ParseRegistration(bytes.NewReader(db), "nix-store --dump-db")
	if err != nil {
		return nil, err
	}
	if len(infos) != len(paths) {
		return nil, fmt.Errorf("nix-store --dump-db gave %d paths for a closure of %d", len(infos), len(paths))
	}
	return &Closure{StoreDir: DefaultStoreDir, Paths: infos}, nil
}

func runNixStore(ctx context.Context, prog string, args []string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stderr = &stderr
	// On cancellation the child is killed; do not wait long for children
	// of its own that still hold its output open.
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		if strings.Contains(msg, "is not valid") {
			err = fmt.Errorf("%w: %w", errNotValid, err)
		}
		return nil, fmt.Errorf("nix-store %s: %w: %s", args[0], err, msg)
	}
	return out, nil
}
