package uki_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbimg/nbimg/internal/testutil"
	"github.com/nbimg/nbimg/uki"
	"github.com/nbimg/nbimg/uki/ukitest"
)

// TestEncryptedKeys reads encrypted keys in the forms OpenSSL writes:
// Debian's snakeoil key (PKCS#8, PBES2 with PBKDF2-HMAC-SHA256 and
// DES-EDE3-CBC), PKCS#8 with AES-CBC and other PRFs, and the legacy
// "Proc-Type: 4,ENCRYPTED" PEM. Each gives the key openssl decrypts
// (the same signature bytes), a wrong passphrase is ErrPassphrase, none is
// ErrEncryptedKey; and sbverify accepts a UKI signed with the snakeoil key
// read with its passphrase.
func TestEncryptedKeys(t *testing.T) {
	openssl := testutil.Tool(t, "openssl", "openssl")
	plainKey, cert := ukitest.Snakeoil(t) // decrypted by openssl
	plainPEM, err := os.ReadFile(plainKey)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := uki.NewSigner(plainPEM, certPEM)
	if err != nil {
		t.Fatal(err)
	}
	digest := bytes.Repeat([]byte{0x5a}, 32)
	want, err := ref.SignedData(digest)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	encrypt := func(name string, args ...string) string {
		p := filepath.Join(dir, name)
		out, err := exec.Command(openssl, append(args, "-in", plainKey, "-out", p, "-passout", "pass:s3cret")...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
		return p
	}
	keys := map[string]struct{ file, pass string }{
		"snakeoil":            {ukitest.SnakeoilKey, ukitest.SnakeoilPass},
		"pkcs8-aes256":        {encrypt("aes256.pem", "pkcs8", "-topk8", "-v2", "aes-256-cbc"), "s3cret"},
		"pkcs8-aes128-sha1":   {encrypt("aes128.pem", "pkcs8", "-topk8", "-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA1"), "s3cret"},
		"pkcs8-aes192-sha512": {encrypt("aes192.pem", "pkcs8", "-topk8", "-v2", "aes-192-cbc", "-v2prf", "hmacWithSHA512"), "s3cret"},
		"legacy-aes128":       {encrypt("legacy-aes.pem", "rsa", "-traditional", "-aes128"), "s3cret"},
		"legacy-des3":         {encrypt("legacy-des3.pem", "rsa", "-traditional", "-des3"), "s3cret"},
	}
	for name, k := range keys {
		t.Run(name, func(t *testing.T) {
			pemBytes, err := os.ReadFile(k.file)
			if err != nil {
				t.Fatal(err)
			}
			if name != "snakeoil" && !bytes.Contains(pemBytes, []byte("ENCRYPTED")) {
				t.Fatalf("openssl did not encrypt %s:\n%s", name, pemBytes)
			}
			s, err := uki.NewSignerPass(pemBytes, certPEM, []byte(k.pass))
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.SignedData(digest)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Error("the decrypted key signs differently from the key openssl decrypted")
			}
			for _, wrong := range []string{"wrong", "", k.pass + "x"} {
				if _, err := uki.NewSignerPass(pemBytes, certPEM, []byte(wrong)); !errors.Is(err, uki.ErrPassphrase) {
					t.Errorf("passphrase %q: %v, want ErrPassphrase", wrong, err)
				}
			}
			if _, err := uki.NewSigner(pemBytes, certPEM); !errors.Is(err, uki.ErrEncryptedKey) || !strings.Contains(err.Error(), "openssl") {
				t.Errorf("no passphrase: %v, want ErrEncryptedKey saying how to decrypt it", err)
			}
		})
	}
	// A passphrase for an unencrypted key is ignored.
	if _, err := uki.NewSignerPass(plainPEM, certPEM, []byte("unused")); err != nil {
		t.Errorf("unencrypted key with a passphrase: %v", err)
	}
	// scrypt (openssl pkcs8 -scrypt) is refused with a way out.
	scrypt := encrypt("scrypt.pem", "pkcs8", "-topk8", "-scrypt")
	b, err := os.ReadFile(scrypt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := uki.NewSignerPass(b, certPEM, []byte("s3cret")); !errors.Is(err, uki.ErrBadKey) || !strings.Contains(err.Error(), "scrypt") {
		t.Errorf("scrypt key: %v, want ErrBadKey naming scrypt", err)
	}

	// The snakeoil key, read with its passphrase, signs a UKI sbverify
	// accepts.
	stub := ukitest.Stub(t)
	k, err := os.ReadFile(ukitest.SnakeoilKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := uki.NewSignerPass(k, certPEM, []byte(ukitest.SnakeoilPass))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := writeUKI(t, stub, contents(4099, 8191), s)
	if msg, ok := ukitest.Sbverify(t, cert, out); !ok {
		t.Errorf("sbverify refuses the UKI signed with the snakeoil key read by nbimg:\n%s", msg)
	}
}
