package binarycache

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// SecretKey is a Nix binary cache signing key.
type SecretKey struct {
	Name string             // the key's name, e.g. cache.example.org-1
	Key  ed25519.PrivateKey // 64 bytes: seed and public key, as libsodium keeps it
}

// PublicKey is the public half of a SecretKey, as trusted-public-keys
// lists it.
type PublicKey struct {
	Name string
	Key  ed25519.PublicKey // 32 bytes
}

// ErrKeyFormat is wrapped by every error about a malformed key.
var ErrKeyFormat = errors.New("binarycache: malformed key")

// GenerateKey makes a new signing key named name from the randomness of
// rand (crypto/rand.Reader when nil).
func GenerateKey(name string, rand io.Reader) (SecretKey, error) {
	if err := checkKeyName(name); err != nil {
		return SecretKey{}, err
	}
	_, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return SecretKey{}, fmt.Errorf("generating key %s: %w", name, err)
	}
	return SecretKey{Name: name, Key: priv}, nil
}

func checkKeyName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: the key has no name (want name:base64)", ErrKeyFormat)
	}
	if strings.ContainsAny(name, ": \t\r\n") {
		return fmt.Errorf("%w: key name %q has a colon or white space", ErrKeyFormat, name)
	}
	return nil
}

// splitKey splits "name:base64" into the name and the decoded bytes, which
// must be size long.
func splitKey(s, what string, size int) (string, []byte, error) {
	s = strings.TrimSpace(s)
	name, b64, ok := strings.Cut(s, ":")
	if !ok {
		return "", nil, fmt.Errorf("%w: %s has no colon (want name:base64)", ErrKeyFormat, what)
	}
	if err := checkKeyName(name); err != nil {
		return "", nil, err
	}
	b, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s %s: invalid base64: %w", ErrKeyFormat, what, name, err)
	}
	if len(b) != size {
		return "", nil, fmt.Errorf("%w: %s %s has %d bytes, want %d", ErrKeyFormat, what, name, len(b), size)
	}
	return name, b, nil
}

// ParseSecretKey parses a secret key as `nix-store
// --generate-binary-cache-key` writes it. Surrounding white space (a
// trailing newline) is ignored. The key's second half must be the public
// key of its first, as in every key Nix or GenerateKey made.
func ParseSecretKey(s string) (SecretKey, error) {
	name, b, err := splitKey(s, "secret key", ed25519.PrivateKeySize)
	if err != nil {
		return SecretKey{}, err
	}
	k := ed25519.PrivateKey(b)
	derived := ed25519.NewKeyFromSeed(k.Seed())
	if !derived.Equal(k) {
		return SecretKey{}, fmt.Errorf("%w: secret key %s: its public half does not match its seed", ErrKeyFormat, name)
	}
	return SecretKey{Name: name, Key: k}, nil
}

// ReadSecretKeyFile reads a secret key file.
func ReadSecretKeyFile(name string) (SecretKey, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return SecretKey{}, fmt.Errorf("secret key: %w", err)
	}
	k, err := ParseSecretKey(string(b))
	if err != nil {
		return SecretKey{}, fmt.Errorf("secret key file %s: %w", name, err)
	}
	return k, nil
}

// ParsePublicKey parses a public key ("name:base64").
func ParsePublicKey(s string) (PublicKey, error) {
	name, b, err := splitKey(s, "public key", ed25519.PublicKeySize)
	if err != nil {
		return PublicKey{}, err
	}
	return PublicKey{Name: name, Key: ed25519.PublicKey(b)}, nil
}

// ReadPublicKeyFile reads a public key file.
func ReadPublicKeyFile(name string) (PublicKey, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return PublicKey{}, fmt.Errorf("public key: %w", err)
	}
	k, err := ParsePublicKey(string(b))
	if err != nil {
		return PublicKey{}, fmt.Errorf("public key file %s: %w", name, err)
	}
	return k, nil
}

// String returns the key as Nix writes a secret key file (without a
// newline).
func (k SecretKey) String() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// Public returns the key's public half.
func (k SecretKey) Public() PublicKey {
	return PublicKey{Name: k.Name, Key: k.Key.Public().(ed25519.PublicKey)}
}

// String returns the key as trusted-public-keys lists it.
func (k PublicKey) String() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// Sign returns the Sig value of msg: "name:base64(signature)".
func (k SecretKey) Sign(msg string) string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(ed25519.Sign(k.Key, []byte(msg)))
}

// Verify reports whether sig (a Sig value) is this key's signature of msg.
// A signature by another key name is not this key's.
func (k PublicKey) Verify(msg, sig string) bool {
	name, b64, ok := strings.Cut(sig, ":")
	if !ok || name != k.Name {
		return false
	}
	b, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(b) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(k.Key, []byte(msg), b)
}

// Fingerprint returns the text Nix signs for a store path: "1;" path ";"
// NAR hash (sha256:nix32) ";" NAR size ";" and the full reference paths,
// sorted and comma-separated. narHash must already be in sha256:nix32 form.
func Fingerprint(storePath, narHash string, narSize uint64, references []string) string {
	refs := sortedCopy(references)
	return "1;" + storePath + ";" + narHash + ";" + strconv.FormatUint(narSize, 10) + ";" + strings.Join(refs, ",")
}
