# Small store paths for nixstore's and nbimg's tests, built with real Nix
# (no nixpkgs: /bin/sh, the host's coreutils and jq; needs `sandbox = false`).
#
#   nix-build nixstore/testdata/store.nix -A top     # the NixOS-shaped system
#   nix-build nixstore/testdata/store.nix -A info    # its closureInfo, made by Nix
#   nix-build nixstore/testdata/store.nix -A graph   # its closure, as Nix sees it
#
# `info` is the closureInfo directory (store-paths, registration,
# total-nar-size) Nix builds with internal/check/closureinfo.nix; `graph`
# is Nix's exportReferencesGraph JSON, from which the tests take each
# path's narHash and narSize.
let
  system = builtins.currentSystem;
  mk = name: script: builtins.derivation {
    inherit name system;
    builder = "/bin/sh";
    args = [ "-c" ("set -e; PATH=/usr/bin:/bin; " + script) ];
  };
  hashOf = p: builtins.substring 11 32 "${p}";

  # A tree with every kind of NAR node and awkward names and sizes.
  leaf = mk "leaf-1.0" ''
    mkdir -p $out/dir/sub $out/emptydir
    printf 'hi\n' > $out/dir/sub/file
    : > $out/empty
    printf '12345678' > $out/eight
    printf '#!/bin/sh\necho leaf\n' > $out/run && chmod 0755 $out/run
    printf 'x' > $out/a; printf 'x' > $out/a.b; printf 'x' > $out/aB; printf 'x' > $out/B; printf 'x' > $out/a-b
    ln -s dir/sub/file $out/rel-link
    ln -s /nonexistent/target $out/dangling
    head -c 200000 /dev/zero | tr '\0' 'q' > $out/big
  '';
  # Referenced only through the name of a file.
  named = mk "named" "printf 'named\n' > $out";
  # Top-level outputs that are a file, an executable and a symlink.
  file = mk "file.txt" "printf 'a file' > $out";
  exe = mk "exe" "printf '#!/bin/sh\n' > $out; chmod +x $out";
  link = mk "link" "ln -s ${leaf}/dir/sub/file $out";
  # Never referenced: must not show up in a closure.
  unrelated = mk "unrelated" "printf 'alone\n' > $out";

  mid = mk "mid-2" ''
    mkdir -p $out/share
    echo ${leaf} > $out/share/ref
    ln -s ${link} $out/via-link
    echo $out > $out/self
    touch $out/share/${hashOf named}
    # Hashes placed around the scanner's and the NAR writer's buffer edges.
    { head -c 65530 /dev/zero; echo ${file}; head -c 196600 /dev/zero; echo ${exe}; } > $out/share/padded
    chmod 0555 $out/share/padded
  '';
  kernel = mk "linux-6.1" "mkdir $out; printf 'not a kernel' > $out/bzImage; mkdir -p $out/dtbs/broadcom; printf dtb > $out/dtbs/broadcom/x.dtb";
  initrd = mk "initrd-linux-6.1" "mkdir $out; printf 'not an initrd' > $out/initrd";
  stage2 = mk "stage-2-init.sh" "printf '#!/bin/sh\nexec ${mid}/share/ref\n' > $out; chmod +x $out";

  top = mk "nixos-system-test-24.05" ''
    mkdir $out
    ln -s ${kernel}/bzImage $out/kernel
    ln -s ${initrd}/initrd $out/initrd
    ln -s ${stage2} $out/init
    ln -s ${kernel}/dtbs $out/dtbs
    ln -s ${mid} $out/sw
    printf 'console=ttyS0 loglevel=4' > $out/kernel-params
  '';

  # Nix's own exportReferencesGraph JSON of top.
  graph = builtins.derivation {
    name = "closure-graph";
    inherit system;
    builder = "/bin/sh";
    __structuredAttrs = true;
    exportReferencesGraph.closure = [ top ];
    # Structured attributes set no $out: take it from the JSON.
    args = [ "-c" "out=$(/bin/sed -n 's/.*\"outputs\":{\"out\":\"\\([^\"]*\\)\".*/\\1/p' .attrs.json); /bin/cp .attrs.json $out" ];
  };

  # closureInfo of top, made by Nix as nixpkgs' closureInfo makes it.
  info = import ../../internal/check/closureinfo.nix { rootPaths = [ top ]; };
in
{ inherit top info graph unrelated leaf mid file exe link named; }
