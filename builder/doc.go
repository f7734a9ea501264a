// Package builder holds nbimg's pipelines: each whole-command job, from a
// loaded closure (package nixstore) to the files on disk, wiring the stages
// (squashfs, initrd, netboot, kexec, nfsroot) together:
//
//   - Squashfs: an image of directories or the store image of a closure;
//   - InitrdFile / WriteInitrd: base initrds, then the store image in one
//     more cpio segment (built straight into it, or an existing image);
//   - Netboot, KexecTree, PXE, PiNetImage: the boot trees, each with
//     manifest.json;
//   - WriteClosure: a closureInfo directory computed without Nix;
//   - LoadSystems: several systems for one menu.
//
// The store image is made by an ImageWriter (SquashfsImage today), so a
// pipeline does not depend on one format's options. Every output lands
// through internal/atomicfile: whole or not at all, with modes that do not
// depend on the umask. Pipelines check their inputs before writing and
// return warnings (base initrds the kernel cannot unpack, initrds over
// 2 GiB) in their results, for the caller to print.
//
// Limits: builder prints nothing itself and knows no command-line flags;
// errors name the files the user gave.
package builder
