# The client side of "NixOS on Clients": a NixOS module for systems that
# boot over the network without any store image. PXE (or iPXE) loads the
# kernel and initrd of the selected generation from `nbimg pxe
# --binary-cache URL --public-key FILE`; stage 1 brings up the network,
# mounts the local disk as the root file system, and substitutes the
# generation's closure onto it from the binary cache that `nbimg
# binary-cache` writes, trusting only the pinned key; then stage 2 starts as
# usual. Paths already on the disk are not fetched again, so a new
# generation costs only its changed store paths.
#
# Kernel parameters read here (written by nbimg pxe):
#   nbimg.toplevel=PATH       the system to substitute
#   nbimg.substituter=URL     the binary cache
#   nbimg.trusted-key=KEY     the cache's public key (name:base64)
# The key on the command line must equal pinnedKey below: a command line
# from an untrusted DHCP/TFTP server cannot bring its own key.
#
# Import it in the client's configuration:
#
#   imports = [ ./binary-cache-client.nix ];
#   nbimg.client.pinnedKey = "cache.example.org-1:...";   # public.key's text
#
# The disk is formatted once, by hand: mkfs.ext4 -L nixos /dev/sda.
#
# The same steps (Debian's nix-store in stage 1, substitution onto an ext4
# virtio disk, require-sigs with one trusted key, a second generation
# fetching only its new paths) are exercised in QEMU by nbimg's tests
# with the fixture system (binarycache/qemu_test.go,
# testdata/fixture/stage-1-substitute.sh); this module itself needs
# nixpkgs and is not built by them.
{ config, lib, pkgs, ... }:

let
  cfg = config.nbimg.client;
in
{
  options.nbimg.client = {
    pinnedKey = lib.mkOption {
      type = lib.types.str;
      example = "cache.example.org-1:SsxXtvik9ttrApVbL2HMV53GMRLAOGA7YaRM2eyvy7U=";
      description = "The only public key the substitution in stage 1 trusts.";
    };
    rootDevice = lib.mkOption {
      type = lib.types.str;
      default = "/dev/disk/by-label/nixos";
      description = "The local disk the store is substituted onto (ext4).";
    };
    networkModules = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ "virtio_net" "virtio_pci" "virtio_blk" "e1000e" "igb" "r8169" ];
      description = "Kernel modules stage 1 loads for the NIC and the disk.";
    };
  };

  config = {
    fileSystems."/" = {
      device = cfg.rootDevice;
      fsType = "ext4";
    };

    # Network in stage 1: DHCP on every interface.
    boot.initrd.network.enable = true;
    networking.useDHCP = lib.mkDefault true;
    boot.initrd.availableKernelModules = cfg.networkModules;
    boot.initrd.kernelModules = cfg.networkModules;

    # Nix in the initrd: `nix` is a multi-call binary acting on its name,
    # so nix-store is a link to it; copy_bin_and_libs brings its libraries.
    boot.initrd.extraUtilsCommands = ''
      copy_bin_and_libs ${pkgs.nix}/bin/nix
      ln -sf nix $out/bin/nix-store
    '';
    boot.initrd.extraUtilsCommandsTest = ''
      $out/bin/nix-store --version
    '';

    # Runs with the root file system mounted at $targetRoot, before the
    # check that init= exists there.
    boot.initrd.postMountCommands = ''
      top= sub= key=
      for o in $(cat /proc/cmdline); do
        case $o in
          nbimg.toplevel=*) top=''${o#nbimg.toplevel=} ;;
          nbimg.substituter=*) sub=''${o#nbimg.substituter=} ;;
          nbimg.trusted-key=*) key=''${o#nbimg.trusted-key=} ;;
        esac
      done
      if [ -n "$top" ]; then
        if [ "$key" != ${lib.escapeShellArg cfg.pinnedKey} ]; then
          echo "nbimg: nbimg.trusted-key is not the pinned key; not substituting"
          fail
        fi
        echo "nbimg: substituting $top from $sub"
        # Nix asks who it runs as and wants a writable home; stage 1 has
        # no /etc/passwd, USER answers instead.
        USER=root HOME=/tmp NIX_REMOTE= nix-store --realise "$top" \
          --store "local?root=$targetRoot" \
          --option substituters "$sub" \
          --option trusted-public-keys ${lib.escapeShellArg cfg.pinnedKey} \
          --option require-sigs true \
          --option fallback false \
          --option build-users-group "" \
          --option sandbox false \
          || fail
      fi
    '';
  };
}
