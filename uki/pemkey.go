package uki

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
)

// Errors of encrypted keys.
var (
	// ErrEncryptedKey is wrapped when the key is encrypted and no
	// passphrase was given.
	ErrEncryptedKey = errors.New("uki: the signing key is encrypted")
	// ErrPassphrase is wrapped when the passphrase does not decrypt the
	// key.
	ErrPassphrase = errors.New("uki: wrong passphrase for the signing key")
)

// Encrypted PKCS#8 (RFC 5958 EncryptedPrivateKeyInfo) with PBES2 (RFC
// 8018): the form `openssl pkey -aes256`, `openssl pkcs8 -topk8` and
// Debian's OVMF snakeoil key use.
var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACSHA224 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 8}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACSHA384 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	oidHMACSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidDESEDE3CBC = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type encryptedPrivateKeyInfo struct {
	Algorithm algorithmIdentifier
	Data      []byte
}

type pbes2Params struct {
	KeyDerivation algorithmIdentifier
	Encryption    algorithmIdentifier
}

type pbkdf2Params struct {
	Salt       []byte // the "specified" choice; otherSource is refused
	Iterations int
	KeyLength  int                 `asn1:"optional"`
	PRF        algorithmIdentifier `asn1:"optional"` // default hmacWithSHA1
}

// maxIterations bounds PBKDF2's iteration count, so a damaged or hostile
// key file cannot keep nbimg busy for hours (tools write 2048 to a few
// hundred thousand).
var maxIterations = 1 << 24

// decryptPKCS8 returns the PKCS#8 PrivateKeyInfo inside an encrypted one.
func decryptPKCS8(der, pass []byte) ([]byte, error) {
	var info encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(der, &info); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("%w: not an encrypted PKCS#8 key", ErrBadKey)
	}
	if !info.Algorithm.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("%w: encryption scheme %v is not PBES2; re-encrypt the key with `openssl pkcs8 -topk8 -v2 aes-256-cbc` or decrypt it", ErrBadKey, info.Algorithm.Algorithm)
	}
	var p pbes2Params
	if rest, err := asn1.Unmarshal(info.Algorithm.Parameters.FullBytes, &p); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("%w: bad PBES2 parameters", ErrBadKey)
	}
	if !p.KeyDerivation.Algorithm.Equal(oidPBKDF2) {
		return nil, fmt.Errorf("%w: key derivation %v is not PBKDF2 (scrypt is not supported); decrypt the key or re-encrypt it with `openssl pkcs8 -topk8 -v2 aes-256-cbc`", ErrBadKey, p.KeyDerivation.Algorithm)
	}
	var kdf pbkdf2Params
	if rest, err := asn1.Unmarshal(p.KeyDerivation.Parameters.FullBytes, &kdf); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("%w: bad PBKDF2 parameters", ErrBadKey)
	}
	if kdf.Iterations < 1 || kdf.Iterations > maxIterations {
		return nil, fmt.Errorf("%w: PBKDF2 iteration count %d is out of range (1 to %d)", ErrBadKey, kdf.Iterations, maxIterations)
	}
	var prf func() hash.Hash
	switch a := kdf.PRF.Algorithm; {
	case len(a) == 0 || a.Equal(oidHMACSHA1):
		prf = sha1.New
	case a.Equal(oidHMACSHA224):
		prf = sha256.New224
	case a.Equal(oidHMACSHA256):
		prf = sha256.New
	case a.Equal(oidHMACSHA384):
		prf = sha512.New384
	case a.Equal(oidHMACSHA512):
		prf = sha512.New
	default:
		return nil, fmt.Errorf("%w: PBKDF2 pseudo-random function %v is not supported", ErrBadKey, a)
	}
	var keyLen int
	var newCipher func([]byte) (cipher.Block, error)
	switch a := p.Encryption.Algorithm; {
	case a.Equal(oidDESEDE3CBC):
		keyLen, newCipher = 24, des.NewTripleDESCipher
	case a.Equal(oidAES128CBC):
		keyLen, newCipher = 16, aes.NewCipher
	case a.Equal(oidAES192CBC):
		keyLen, newCipher = 24, aes.NewCipher
	case a.Equal(oidAES256CBC):
		keyLen, newCipher = 32, aes.NewCipher
	default:
		return nil, fmt.Errorf("%w: cipher %v is not supported (AES-CBC and DES-EDE3-CBC are); re-encrypt the key with `openssl pkcs8 -topk8 -v2 aes-256-cbc`", ErrBadKey, a)
	}
	if kdf.KeyLength != 0 && kdf.KeyLength != keyLen {
		return nil, fmt.Errorf("%w: PBKDF2 key length %d does not fit the cipher's %d", ErrBadKey, kdf.KeyLength, keyLen)
	}
	var iv []byte
	if rest, err := asn1.Unmarshal(p.Encryption.Parameters.FullBytes, &iv); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("%w: bad cipher parameters (IV)", ErrBadKey)
	}
	key, err := pbkdf2.Key(prf, string(pass), kdf.Salt, kdf.Iterations, keyLen)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	block, err := newCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	bs := block.BlockSize()
	if len(iv) != bs {
		return nil, fmt.Errorf("%w: IV of %d bytes, the cipher needs %d", ErrBadKey, len(iv), bs)
	}
	if len(info.Data) == 0 || len(info.Data)%bs != 0 {
		return nil, fmt.Errorf("%w: encrypted data of %d bytes is not whole cipher blocks", ErrBadKey, len(info.Data))
	}
	plain := make([]byte, len(info.Data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, info.Data)
	// PKCS#7 padding: a wrong passphrase leaves random bytes here.
	n := int(plain[len(plain)-1])
	if n == 0 || n > bs {
		return nil, ErrPassphrase
	}
	for _, b := range plain[len(plain)-n:] {
		if int(b) != n {
			return nil, ErrPassphrase
		}
	}
	return plain[:len(plain)-n], nil
}

// privateKey returns the private key in a PEM block: PKCS#8 "PRIVATE
// KEY", PKCS#1 "RSA PRIVATE KEY", either encrypted with pass (PKCS#8
// "ENCRYPTED PRIVATE KEY" with PBES2, or OpenSSL's legacy "Proc-Type:
// 4,ENCRYPTED" headers).
func privateKey(kb *pem.Block, pass []byte) (any, error) {
	needPass := func() error {
		return fmt.Errorf("%w: give its passphrase, or decrypt it (openssl pkey -in KEY -out PLAIN.key) and keep the copy private", ErrEncryptedKey)
	}
	der := kb.Bytes
	//lint:ignore SA1019 legacy PEM encryption is weak, but keys made that way exist; reading them is the point
	legacy := x509.IsEncryptedPEMBlock(kb)
	if legacy {
		if pass == nil {
			return nil, needPass()
		}
		var err error
		//lint:ignore SA1019 the standard library's only reader of OpenSSL's legacy encrypted PEM
		der, err = x509.DecryptPEMBlock(kb, pass)
		if err != nil {
			if errors.Is(err, x509.IncorrectPasswordError) {
				return nil, ErrPassphrase
			}
			return nil, fmt.Errorf("%w: decrypting the key: %v", ErrBadKey, err)
		}
	}
	var k any
	var err error
	switch kb.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(der)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(der)
	}
	if k != nil || err != nil {
		if err != nil && legacy {
			return nil, ErrPassphrase // the padding passed by chance
		}
		return k, err
	}
	switch kb.Type {
	case "ENCRYPTED PRIVATE KEY":
		if pass == nil {
			return nil, needPass()
		}
		plain, err := decryptPKCS8(der, pass)
		if err != nil {
			return nil, err
		}
		k, err := x509.ParsePKCS8PrivateKey(plain)
		if err != nil {
			return nil, ErrPassphrase // padding can pass by chance; the key cannot
		}
		return k, nil
	}
	return nil, fmt.Errorf("%w: PEM block %q is not a private key", ErrBadKey, kb.Type)
}
