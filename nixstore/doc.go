// Package nixstore is everything nbimg knows about the Nix store: closures
// and where they come from, registrations (closureInfo), NAR serialisation
// and hashes, nix32, store paths, the reference scanner, the `nix-store`
// runner, and reading a NixOS toplevel. It is a leaf: it imports no other
// package of nbimg but internal/ ones.
//
// A closure comes from one of:
//   - a nixpkgs closureInfo directory (store-paths, registration) or a bare
//     registration file, as `nix-store --load-db` and `--register-validity`
//     read it (Load with Input.Closure);
//   - the Nix database, through `nix-store --query --requisites` and
//     `nix-store --dump-db` (Load with only Input.Toplevel, Nix installed);
//   - the store directory itself, without Nix (Scan): each path is
//     serialised as a NAR for its hash and size, and its references are found
//     by looking for the hash parts of the store's entries in it, as Nix does
//     after a build.
//
// A toplevel is a NixOS system.build.toplevel: ReadToplevel, the one place
// its files are read, resolves its kernel, initrd, init, dtbs, firmware and
// kernel-modules links and reads kernel-params, nixos-version and system.
// Its architecture (x86_64 or aarch64, DetectArch) comes from `system`, else
// from the kernel's own header (an x86 bzImage's "HdrS" at 0x202, an arm64
// Image's "ARM\x64" at 56); a kernel that contradicts `system` is an error.
// SubClosure cuts the closure of one path out of a larger one.
// Input.StoreRoot reads /nix/store/X from StoreRoot/nix/store/X and resolves
// absolute symlinks inside it, for stores built in a chroot.
//
// Registrations are written exactly as closureInfo writes them (see
// WriteRegistration), so a squashfs built from a Closure holds the same
// nix-path-registration as one NixOS builds.
//
// Limits: the store directory is /nix/store for toplevels and the scanner's
// default; registrations without hashes (`--register-validity` without
// `--hash-given`) are not accepted; Scan's references can be a superset of
// Nix's (see Scan); NAR serialisation records what Nix records (regular
// files with the owner's execute bit, symlinks, directories) and refuses
// other file types.
package nixstore
