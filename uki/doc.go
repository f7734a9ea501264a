// Package uki writes Unified Kernel Images: systemd's EFI stub (a PE/COFF
// executable) with the kernel, initrd, command line, os-release and kernel
// version added as PE sections, optionally signed for UEFI Secure Boot with
// an Authenticode signature.
//
// The layout is the one systemd's ukify makes: the stub's sections stay as
// they are, the new ones follow in the order .osrel, .cmdline, .dtb, .uname,
// .splash, .initrd, .linux (.linux last) at virtual addresses aligned to
// the stub's SectionAlignment and file offsets aligned to its
// FileAlignment, each marked readable initialised data (.linux as code).
// SizeOfImage, SizeOfInitializedData, SizeOfHeaders and the checksum are
// set as the PE/COFF specification says; a COFF symbol table the stub may
// carry is dropped, and stub section data that is not file-aligned is moved
// so that the file has no gaps.
//
// Sections are written from readers, so an initrd of gigabytes is never
// held in memory; the Authenticode digest and the PE checksum are computed
// while the bytes go out. A signature is a PKCS#7 SignedData (SHA-256,
// RSA PKCS#1 v1.5, no signing time) in the certificate table at the end of
// the file: the same inputs and key give the same bytes.
//
// Limits: PE32 and PE32+ stubs (x86, x86-64, arm64...); a signed stub is
// refused (ukify does the same); every section and the whole image must
// stay under 4 GiB, the PE format's limit, and firmware usually refuses far
// less (see LargeImage). Only RSA keys sign. Keys are PEM: PKCS#8 or
// PKCS#1, plain or encrypted with a passphrase (NewSignerPass: PKCS#8
// PBES2 with PBKDF2 and AES-CBC or DES-EDE3-CBC, or OpenSSL's legacy
// encrypted PEM); scrypt and PBES1 keys are refused with the openssl
// command that converts them.
package uki
