# The netboot outputs of a NixOS configuration, built with nbimg in place of
# make-squashfs.nix (the store image) and makeInitrdNG (appending it to the
# initrd). The result has bzImage, initrd, netboot.ipxe and manifest.json.
#
#   nix-build netboot.nix --arg configuration ./configuration.nix
{ pkgs ? import <nixpkgs> { }
, configuration
, nbimg ? pkgs.callPackage ./nbimg.nix { }
}:

let
  system = (import (pkgs.path + "/nixos/lib/eval-config.nix") {
    modules = [
      (pkgs.path + "/nixos/modules/installer/netboot/netboot-minimal.nix")
      configuration
    ];
  }).config.system.build.toplevel;

  # closureInfo makes the closure's store paths inputs of the build below, so
  # nbimg can read them, and gives it their registration without Nix.
  closure = pkgs.closureInfo { rootPaths = [ system ]; };
in
pkgs.runCommand "netboot-${system.name}" { nativeBuildInputs = [ nbimg ]; } ''
  nbimg netboot -o $out --toplevel ${system} --closure ${closure} \
    --comp "zstd -Xcompression-level 19"
''
