package uki

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"unicode/utf16"
)

// ErrBadKey wraps the reasons a key or certificate cannot sign.
var ErrBadKey = errors.New("uki: unusable signing key or certificate")

// Signer signs images with Key, naming Cert as the signer. Key's public
// key must be Cert's, and RSA: PKCS#1 v1.5 signatures are deterministic,
// so a signed image is as reproducible as an unsigned one.
type Signer struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewSigner returns a Signer from a PEM private key (PKCS#8 "PRIVATE KEY"
// or PKCS#1 "RSA PRIVATE KEY", unencrypted) and a PEM certificate, the
// files sbsign and sbctl use. An encrypted key is refused with
// ErrEncryptedKey: see NewSignerPass.
func NewSigner(keyPEM, certPEM []byte) (*Signer, error) {
	return NewSignerPass(keyPEM, certPEM, nil)
}

// NewSignerPass is NewSigner for keys that may be encrypted with pass:
// PKCS#8 "ENCRYPTED PRIVATE KEY" with PBES2 (PBKDF2 with HMAC-SHA-1 or
// SHA-2, AES-CBC or DES-EDE3-CBC: what OpenSSL writes) or OpenSSL's
// legacy "Proc-Type: 4,ENCRYPTED" PEM. A wrong passphrase is refused with
// ErrPassphrase. pass is ignored for an unencrypted key; nil means none
// was given.
func NewSignerPass(keyPEM, certPEM, pass []byte) (*Signer, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: the certificate is not a PEM CERTIFICATE", ErrBadKey)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", ErrBadKey, err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("%w: the key is not PEM", ErrBadKey)
	}
	key, err := privateKey(kb, pass)
	if errors.Is(err, ErrEncryptedKey) || errors.Is(err, ErrPassphrase) || errors.Is(err, ErrBadKey) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: key: %v", ErrBadKey, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: key of type %T cannot sign", ErrBadKey, key)
	}
	sg := &Signer{Cert: cert, Key: s}
	if err := sg.check(); err != nil {
		return nil, err
	}
	return sg, nil
}

func (s *Signer) check() error {
	if s == nil || s.Cert == nil || s.Key == nil {
		return fmt.Errorf("%w: a signer needs a certificate and a key", ErrBadKey)
	}
	pub, ok := s.Key.Public().(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: only RSA keys sign UKIs (firmware checks RSA; other schemes are not reproducible)", ErrBadKey)
	}
	if cp, ok := s.Cert.PublicKey.(*rsa.PublicKey); !ok || !cp.Equal(pub) {
		return fmt.Errorf("%w: the key does not belong to the certificate %q", ErrBadKey, s.Cert.Subject)
	}
	return nil
}

// Object identifiers of PKCS#7 and Authenticode.
var (
	oidSignedData      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidContentType     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidRSAEncryption   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidSHA256          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSpcIndirectData = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 4}
	oidSpcPEImageData  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 15}
	oidSpcSpOpusInfo   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 12}
)

// DER encoding helpers: tlv writes one element.
func tlv(tag byte, content ...[]byte) []byte {
	n := 0
	for _, c := range content {
		n += len(c)
	}
	out := []byte{tag}
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	default:
		var l []byte
		for v := n; v > 0; v >>= 8 {
			l = append([]byte{byte(v)}, l...)
		}
		out = append(out, 0x80|byte(len(l)))
		out = append(out, l...)
	}
	for _, c := range content {
		out = append(out, c...)
	}
	return out
}

func seq(c ...[]byte) []byte { return tlv(0x30, c...) }

// set encodes a DER SET OF: elements sorted by their encodings.
func set(c ...[]byte) []byte {
	s := slices.Clone(c)
	slices.SortFunc(s, bytes.Compare)
	return tlv(0x31, s...)
}

func mustMarshal(v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("uki: encoding %T: %v", v, err)) // only fixed, valid values get here
	}
	return b
}

func oid(o asn1.ObjectIdentifier) []byte { return mustMarshal(o) }

var asn1Null = []byte{0x05, 0x00}

func algorithm(o asn1.ObjectIdentifier) []byte { return seq(oid(o), asn1Null) }

// spcIndirectData returns the SpcIndirectDataContent naming a PE image
// whose Authenticode SHA-256 digest is digest.
func spcIndirectData(digest []byte) []byte {
	// SpcPeImageData: no flags, and the file link every signer writes, an
	// "<<<Obsolete>>>" BMPString in [0] { [2] { [0] ... } }.
	var bmp []byte
	for _, r := range utf16.Encode([]rune("<<<Obsolete>>>")) {
		bmp = binary.BigEndian.AppendUint16(bmp, r)
	}
	peImage := seq(
		[]byte{0x03, 0x01, 0x00},
		tlv(0xa0, tlv(0xa2, tlv(0x80, bmp))),
	)
	return seq(
		seq(oid(oidSpcPEImageData), peImage),
		seq(algorithm(oidSHA256), tlv(0x04, digest)),
	)
}

// contentOf returns the content octets of a DER element (without its tag
// and length): what Authenticode's messageDigest covers.
func contentOf(der []byte) []byte {
	var rv asn1.RawValue
	if _, err := asn1.Unmarshal(der, &rv); err != nil {
		panic(fmt.Sprintf("uki: re-reading own DER: %v", err))
	}
	return rv.Bytes
}

// SignedData returns the DER PKCS#7 ContentInfo that signs the PE image
// whose Authenticode digest is digest: SignedData with an
// SpcIndirectDataContent, the signer's certificate and one SignerInfo
// whose authenticated attributes are the content type, the message
// digest and an empty SpcSpOpusInfo (no signing time, so the bytes are a
// function of the digest and the key).
func (s *Signer) SignedData(digest []byte) ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if len(digest) != sha256.Size {
		return nil, fmt.Errorf("uki: digest of %d bytes is not SHA-256", len(digest))
	}
	idc := spcIndirectData(digest)
	md := sha256.Sum256(contentOf(idc))
	attrs := [][]byte{
		seq(oid(oidContentType), set(oid(oidSpcIndirectData))),
		seq(oid(oidSpcSpOpusInfo), set(seq())),
		seq(oid(oidMessageDigest), set(tlv(0x04, md[:]))),
	}
	signed := set(attrs...) // signed as a SET OF, stored as [0] IMPLICIT
	h := sha256.Sum256(signed)
	var sig []byte
	var err error
	if k, ok := s.Key.(*rsa.PrivateKey); ok {
		sig, err = rsa.SignPKCS1v15(nil, k, crypto.SHA256, h[:])
	} else {
		sig, err = s.Key.Sign(rand.Reader, h[:], crypto.SHA256)
	}
	if err != nil {
		return nil, fmt.Errorf("uki: signing: %w", err)
	}
	signedImplicit := slices.Clone(signed)
	signedImplicit[0] = 0xa0
	signerInfo := seq(
		mustMarshal(1),
		seq(s.Cert.RawIssuer, mustMarshal(s.Cert.SerialNumber)),
		algorithm(oidSHA256),
		signedImplicit,
		algorithm(oidRSAEncryption),
		tlv(0x04, sig),
	)
	sd := seq(
		mustMarshal(1),
		set(algorithm(oidSHA256)),
		seq(oid(oidSpcIndirectData), tlv(0xa0, idc)),
		tlv(0xa0, s.Cert.Raw),
		set(signerInfo),
	)
	return seq(oid(oidSignedData), tlv(0xa0, sd)), nil
}

// WIN_CERTIFICATE fields for a PKCS#7 signature.
const (
	winCertRevision2       = 0x0200
	winCertTypePKCSSigned  = 0x0002
	winCertificateHdrBytes = 8
)

// certTable returns a certificate table holding one WIN_CERTIFICATE with
// the PKCS#7 signature p7, padded with zeros to 8 bytes.
func certTable(p7 []byte) []byte {
	n := winCertificateHdrBytes + len(p7)
	b := make([]byte, winCertificateHdrBytes, alignUp(int64(n), 8))
	binary.LittleEndian.PutUint32(b, uint32(n))
	binary.LittleEndian.PutUint16(b[4:], winCertRevision2)
	binary.LittleEndian.PutUint16(b[6:], winCertTypePKCSSigned)
	b = append(b, p7...)
	return b[:cap(b)]
}

func alignUp(v, a int64) int64 { return (v + a - 1) / a * a }
