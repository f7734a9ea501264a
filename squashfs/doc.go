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
// Compressors are named with mksquashfs's -comp syntax (ParseCompressor);
// each is a codec of its own (comp_zstd.go, comp_gzip.go, comp_xz.go):
// zstd, xz, gzip, or "none" for an image with nothing compressed (what
// mksquashfs -noI -noId -noD -noF -noX writes). zstd uses libzstd through
// cgo, or github.com/klauspost/compress when built with CGO_ENABLED=0 (see
// EncoderName); every block is one zstd frame whose window is at most the
// block, as the kernel requires. xz writes CRC32-checked streams (the
// kernel's decoder knows no CRC64) and supports only a dictionary as large
// as the block, because github.com/ulikunitz/xz writes corrupt streams when
// incompressible input is longer than the dictionary.
//
// Units and the cache: a node with Node.Unit set (each store path of a Nix
// store image) is a unit. Its files' data blocks and the fragment blocks
// holding their tails are written together and hold nothing from outside
// it; a file identical to one in an earlier unit takes that file's data
// blocks but keeps its tail in its own unit's fragment. A unit's data area
// is therefore a function of its own files, the compressor and the block
// size, and Options.Cache can hold it: a rebuild copies each unit found in
// the cache (and reads none of its files; their sizes and sha256, needed to
// find duplicates, are in the entry) and compresses only the others. The
// image is byte-identical with no cache, a cold one or a warm one, for any
// number of processors. Entries name the encoder (see EncoderName), so a
// cgo build and a pure-Go build do not share them.
//
// All-zero blocks are stored as holes. As with mksquashfs, the inode reports
// them as sparse (an extended inode) only for host files that are sparse on
// disk (Node.Holes).
//
// Limits: extended attributes are not written (the image says so with the
// NO_XATTRS flag; Nix stores have none); HostNode notes paths that have
// them and Options.Warn reports them once. There is no appending to an existing
// image, no LZ4/LZO/LZMA compressors, no pseudo files and no sorting hints.
// Uid and gid values are 32-bit and at most 65,535 distinct ids fit (the
// superblock's count is 16 bits).
package squashfs
