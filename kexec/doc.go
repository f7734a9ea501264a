// Package kexec writes a kexec tree: the files that boot a NixOS system
// from a running Linux with kexec, without a boot loader or a network boot
// server.
//
// A tree is a directory holding three files, under the names NixOS's
// netboot module uses:
//
//	bzImage     the system's kernel
//	initrd.gz   the system's initrd followed by the store image (what
//	            `nbimg netboot` writes as initrd; the name is NixOS's and
//	            does not mean the whole file is gzip)
//	kexec-boot  a POSIX shell script that loads the two with
//	            `kexec --load` and starts them with `kexec -e`
//
// [Script] writes kexec-boot and [WriteTarball] a reproducible tar.gz of a
// tree. Writing the kernel and the initrd is left to the caller (package
// builder does it).
//
// kexec-boot checks that kexec (kexec-tools) is installed, finds the kernel
// and the initrd next to itself whatever the working directory, loads them
// with the command line "init=<toplevel>/init <kernel-params>" followed by
// its own arguments, adds --kexec-syscall-auto when the installed kexec
// knows it (kexec_file_load where the kernel allows it, kexec_load
// otherwise), and runs `kexec -e`. It needs root and a kernel built with
// kexec support; it does not unmount or sync anything first: like NixOS's
// script, it replaces the running kernel at once.
//
// Limits: the command line is stored in the script inside single quotes, so
// any byte but NUL and line breaks can appear in it; the tarball holds
// regular files and directories only, with owner 0, one fixed time and
// permissions 0755 or 0644.
package kexec
