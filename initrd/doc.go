// Package initrd writes Linux initial ramdisks the way the kernel's
// initramfs unpacker reads them: a concatenation of segments, each a cpio
// archive in the "newc" format, compressed or not.
//
// It has three parts:
//
//   - [Archive] writes one deterministic newc archive: entries sorted
//     bytewise by name, parent directories emitted before their children,
//     uid and gid 0, one fixed modification time (1 unless given), inode
//     numbers assigned 1, 2, 3... in output order, and the TRAILER!!!
//     record. Regular files, directories and symbolic links are supported.
//   - [Writer] builds a whole initrd: existing initrds ("bases") copied
//     unchanged, then one segment holding a single file, the store image,
//     under [DefaultName]. The image can be streamed into the segment
//     through an [io.WriteSeeker] view without knowing its size up front
//     (the header's size field is patched when the image is done), so a
//     squashfs writer can write straight into the initrd.
//   - [Identify] says what a base initrd is made of (gzip, zstd, xz, lzma,
//     bzip2, lz4, lzo, uncompressed cpio, or a concatenation of those).
//
// Limits, all from the newc format and the kernel's unpacker:
//
//   - A file must be smaller than 4 GiB: newc sizes are 32-bit hexadecimal
//     fields. Larger files fail with [ErrFileTooLarge] instead of being
//     dropped or truncated.
//   - Names and symbolic link targets are at most 4095 bytes (PATH_MAX with
//     its terminating NUL). Names are stored relative, without a leading
//     "/" or "./": the kernel resolves them from the root either way, and
//     cpio and bsdtar extract them without warnings.
//   - Modification times are 32-bit unsigned seconds.
//   - Device nodes, FIFOs, sockets and hard links are not written; the
//     kernel creates /dev/console itself, and a stage 1 mounts devtmpfs.
//   - An uncompressed segment starts at an offset that is a multiple of 4
//     (the kernel ignores cpio magic elsewhere); the writer pads with NUL
//     bytes, which the kernel skips between segments.
//   - Compressed segments use gzip, zstd or xz as the kernel decompresses
//     them (xz with a CRC32 check). The encoders are pure Go and pinned in
//     go.mod, so the same input gives the same bytes.
//   - Initrds over 2 GiB are written but reported in [Result.Warnings]:
//     iPXE builds and EFI loaders commonly fail there.
//
// Nothing in this package reads the clock or prints: times are inputs and
// warnings are returned.
package initrd
