package uki

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"testing"
)

// encryptPKCS8 is a test-only writer of PBES2-encrypted PKCS#8 (PBKDF2
// with HMAC-SHA-256, AES-256-CBC or DES-EDE3-CBC), the inverse of
// decryptPKCS8.
func encryptPKCS8(t testing.TB, plain, pass, salt, iv []byte, iter int, tripleDES bool) []byte {
	t.Helper()
	keyLen, oid, newCipher := 32, oidAES256CBC, aes.NewCipher
	if tripleDES {
		keyLen, oid, newCipher = 24, oidDESEDE3CBC, des.NewTripleDESCipher
	}
	key, err := pbkdf2.Key(sha256.New, string(pass), salt, iter, keyLen)
	if err != nil {
		t.Fatal(err)
	}
	block, err := newCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	bs := block.BlockSize()
	iv = append(iv[:0:0], iv...) // the first bs bytes, zero-padded
	iv = append(iv, make([]byte, bs)...)[:bs]
	n := bs - len(plain)%bs
	data := append(append([]byte(nil), plain...), bytes.Repeat([]byte{byte(n)}, n)...)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(data, data)
	raw := func(v any) asn1.RawValue {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return asn1.RawValue{FullBytes: b}
	}
	kdf := raw(pbkdf2Params{Salt: salt, Iterations: iter, PRF: algorithmIdentifier{Algorithm: oidHMACSHA256, Parameters: asn1.RawValue{Tag: asn1.TagNull}}})
	params := raw(pbes2Params{
		KeyDerivation: algorithmIdentifier{Algorithm: oidPBKDF2, Parameters: kdf},
		Encryption:    algorithmIdentifier{Algorithm: oid, Parameters: raw(iv)},
	})
	der, err := asn1.Marshal(encryptedPrivateKeyInfo{Algorithm: algorithmIdentifier{Algorithm: oidPBES2, Parameters: params}, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// FuzzDecryptPKCS8 encrypts arbitrary contents with arbitrary passphrases
// and salts and decrypts them: the right passphrase gives the contents
// back, another gives ErrPassphrase or (by chance of the padding) other
// bytes, never a panic; and arbitrary bytes as a key file (the seeds
// include Debian's snakeoil key) decrypt or fail without panicking.
func FuzzDecryptPKCS8(f *testing.F) {
	if b, err := os.ReadFile("/usr/share/ovmf/PkKek-1-snakeoil.key"); err == nil {
		if p, _ := pem.Decode(b); p != nil {
			f.Add(p.Bytes, []byte("snakeoil"), []byte("salt"), uint16(1), false)
		}
	}
	f.Add([]byte("a private key"), []byte("pass"), []byte("12345678"), uint16(3), false)
	f.Add([]byte{}, []byte{}, []byte{}, uint16(1), true)
	f.Fuzz(func(t *testing.T, plain, pass, salt []byte, iter uint16, tripleDES bool) {
		defer func(m int) { maxIterations = m }(maxIterations)
		maxIterations = 64 // arbitrary key files stay fast
		if _, err := decryptPKCS8(plain, pass); err != nil && !errors.Is(err, ErrBadKey) && !errors.Is(err, ErrPassphrase) {
			t.Fatalf("decrypting arbitrary bytes: unwrapped error %v", err)
		}
		it := int(iter%64) + 1
		der := encryptPKCS8(t, plain, pass, salt, salt, it, tripleDES)
		got, err := decryptPKCS8(der, pass)
		if err != nil {
			t.Fatalf("the right passphrase: %v", err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("decrypted %x, encrypted %x", got, plain)
		}
		wrong := append([]byte("x"), pass...)
		if got, err := decryptPKCS8(der, wrong); err == nil && bytes.Equal(got, plain) && len(plain) > 0 {
			t.Fatal("a wrong passphrase decrypted the contents")
		} else if err != nil && !errors.Is(err, ErrPassphrase) {
			t.Fatalf("a wrong passphrase: %v, want ErrPassphrase", err)
		}
	})
}
