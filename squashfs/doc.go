// Package squashfs writes SquashFS 4.0 images, the format the Linux kernel
// mounts and that mksquashfs and unsquashfs (squashfs-tools) produce and read.
//
// The input is a Tree of Nodes: directories, regular files, symlinks, device
// nodes, FIFOs and sockets. A Tree is built from host directories (DirTree,
// with the semantics of "mksquashfs DIR... OUT"), from single host paths
// placed under a chosen name (HostNode, the "-keep-as-directory" layout of a
// Nix store image), or from in-memory files. Nothing is copied: regular files
// are read from their host paths while the image is written.
//
// Writing happens in two steps. NewPlan decides, as a pure function of the
// tree, its file contents and the Options, where everything goes: inode
// numbers (depth-first, entries sorted bytewise, the root last, as mksquashfs
// numbers them), which files are duplicates of earlier ones (only files whose
// size matches another file's are read: the sha256 of their first 64 KiB,
// then of the whole file for those still alike), which file
// tails share which fragment block, and the order of data blocks in the
// image. Plan.Write then reads, compresses (on Options.Processors workers,
// with a window of 2×Processors+2 blocks in flight, so memory does not grow
// with the input) and writes the blocks in that order, followed by the
// inode, directory, fragment, export and id tables; the superblock is
// written last, at the offset where the image started. Write does not
// change the plan. The output is byte-identical for any number of
// processors; a file that changes while it is read is an error (ErrChanged).
//
// The on-disk choices follow mksquashfs 4.5 so that sqfsdiff finds no
// difference to an image it makes with matching options: basic or extended
// inodes chosen by the same rules, directory headers split every 256 entries
// and whenever the inode block or inode-number range changes, a directory
// index for listings larger than a metadata block, all-zero blocks stored
// sparse, blocks that do not shrink stored uncompressed. Unlike mksquashfs's
// default, tails of files larger than a block are packed into fragments too
// (its -tailends).
//
// Compressors are named with mksquashfs's -comp syntax (ParseCompressor):
// zstd, xz, gzip, or "none" for an image with nothing compressed (what
// mksquashfs -noI -noId -noD -noF -noX writes). zstd uses libzstd through
// cgo, or github.com/klauspost/compress when built with CGO_ENABLED=0 (see
// EncoderName); every block is one zstd frame whose window is at most the
// block, as the kernel requires. xz writes CRC32-checked streams (the
// kernel's decoder knows no CRC64) and supports only a dictionary as large
// as the block, because github.com/ulikunitz/xz writes corrupt streams when
// incompressible input is longer than the dictionary.
//
// All-zero blocks are stored as holes. As with mksquashfs, the inode reports
// them as sparse (an extended inode) only for host files that are sparse on
// disk (Node.Holes).
//
// Limits: extended attributes are not written (the image says so with the
// NO_XATTRS flag; Nix stores have none). There is no appending to an existing
// image, no LZ4/LZO/LZMA compressors, no pseudo files and no sorting hints.
// Uid and gid values are 32-bit and at most 65536 distinct ids fit.
package squashfs
