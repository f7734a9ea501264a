#!/usr/bin/env bash
# The NixOS way of building a netboot initrd, the reference `make bench`
# measures `nbimg netboot` against: make-squashfs.nix's mksquashfs call,
# then makeInitrdNG's cpio of the image compressed with `zstd -10`,
# appended to the stage-1 initrd.
#
#   nixos-netboot.sh CLOSURE_DIR STORE_ROOT STAGE1_INITRD ZSTD_LEVEL PROCESSORS OUT
set -euo pipefail

closure=$1 root=$2 stage1=$3 level=$4 procs=$5 out=$6
work=$(mktemp -d "$out.work-XXXXXX")
trap 'rm -rf "$work"' EXIT

cp "$closure/registration" "$work/nix-path-registration"
mapfile -t paths < <(sed "s|^|$root|" "$closure/store-paths")
mksquashfs "$work/nix-path-registration" "${paths[@]}" "$work/nix-store.squashfs" \
	-quiet -no-progress -no-hardlinks -keep-as-directory -all-root -b 1048576 \
	-comp zstd -Xcompression-level "$level" -processors "$procs" -root-mode 0755
(cd "$work" && echo nix-store.squashfs | cpio -o -H newc --quiet --reproducible -R +0:+0) |
	zstd -10 -q -c >"$work/store.cpio.zst"
cat "$stage1" "$work/store.cpio.zst" >"$out"
