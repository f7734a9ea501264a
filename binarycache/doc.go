// Package binarycache writes a Nix binary cache of a store closure: the
// layout `nix copy --to file://DIR` writes and Nix substitutes from over
// file:// and http://, so a client that trusts one public key can fetch a
// NixOS system path by path.
//
// A cache directory holds
//
//	nix-cache-info          StoreDir, WantMassQuery, Priority
//	<hashpart>.narinfo      one per store path: where its NAR is, the NAR's
//	                        and the file's hashes and sizes, its references
//	                        (base names), its deriver when known, and Sig
//	                        lines (ed25519, Nix's fingerprint of the path)
//	nar/<filehash>.nar[.xz|.zst]
//	                        the path's NAR, compressed; the name is the nix32
//	                        sha256 of the file itself
//	manifest.json           what the last Write added (nbimg's own; Nix
//	                        ignores it)
//
// Write serialises each path as a NAR (nixstore.WriteNAR), checks the
// hash and size against the closure's registration, and compresses the NARs
// in parallel with results taken in input order. An existing directory is
// extended: a path whose narinfo is already there (and whose NAR file is
// present) is kept as it is, gaining only the signatures of keys it lacks,
// so one directory serves every generation of a system and a new
// generation costs only its new paths. Every file is written to a
// temporary name in its directory and renamed into place; narinfos land
// after their NAR files, references before the paths that refer to them,
// so a client reading the cache while it grows never sees a path it cannot
// fetch whole. The same closure and options give the same bytes, whatever
// the number of workers.
//
// Keys are Nix's: a secret key file as `nix-store
// --generate-binary-cache-key` writes it ("name:" and the base64 of the
// 64-byte ed25519 secret key), a public key as "name:" and the base64 of
// the 32-byte public key, and a signature as "name:" and the base64 of the
// ed25519 signature of the fingerprint
// "1;<store path>;<NAR hash sha256:nix32>;<NAR size>;<references, full
// paths, comma-separated>".
//
// Limits: compression is xz (github.com/ulikunitz/xz, its default
// 8 MiB dictionary), zstd (libzstd with cgo, github.com/klauspost/compress
// without; the two give different bytes) or none; Nix also reads bzip2
// and brotli, which are not written. Content-addressed paths (CA lines)
// and NAR listings (.ls files) are not written; binary caches with a
// different store directory are refused rather than mixed. Paths are never
// removed: pruning old generations is left to the operator.
package binarycache
