# closureInfo of rootPaths made by real Nix, as nixpkgs' closureInfo makes
# it, without nixpkgs: Nix exports the closure's reference graph into the
# structured-attributes JSON file and the host's jq writes, in Nix's order,
#
#   $out/store-paths      one store path a line
#   $out/registration     per path: path, narHash, narSize, an empty deriver
#                         line, the number of references, the references
#                         (the format of nix-store --load-db)
#   $out/total-nar-size   the sum of the narSizes
#
# The builder is the host's /bin/sh and jq (Debian's jq): it needs
# `sandbox = false`, as the rest of nbimg's test Nix code does.
#
#   nix-build closureinfo.nix --arg rootPaths '[ (builtins.storePath "/nix/store/...") ]'
{ rootPaths, system ? builtins.currentSystem, jq ? "/usr/bin/jq" }:

builtins.derivation {
  name = "closure-info";
  inherit system;
  builder = "/bin/sh";
  __structuredAttrs = true;
  exportReferencesGraph.closure = rootPaths;
  args = [ "-c" ''
    set -eu
    PATH=/usr/bin:/bin
    # Nix 2.8 (Debian 12) names the file in NIX_ATTRS_JSON_FILE and also
    # leaves it as .attrs.json in the build directory.
    attrs=''${NIX_ATTRS_JSON_FILE:-$NIX_BUILD_TOP/.attrs.json}
    # Structured attributes set no $out variable.
    out=$(${jq} -r .outputs.out "$attrs")
    mkdir "$out"
    ${jq} -r '.closure[].path' "$attrs" > "$out/store-paths"
    ${jq} -r '.closure[] | .path, .narHash, .narSize, "", (.references | length), .references[]' "$attrs" > "$out/registration"
    ${jq} -r '[.closure[].narSize] | add // 0' "$attrs" > "$out/total-nar-size"
  '' ];
}
