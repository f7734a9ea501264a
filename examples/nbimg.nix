# nbimg as a Nix package. Use with callPackage:
#   nbimg = pkgs.callPackage ./nbimg.nix { };
# Set vendorHash to the value Nix reports on the first build.
{ lib, buildGoModule, fetchFromGitHub }:

buildGoModule rec {
  pname = "nbimg";
  version = "0.1.0";

  src = fetchFromGitHub {
    owner = "nbimg";
    repo = "nbimg";
    rev = "v${version}";
    hash = lib.fakeHash;
  };

  vendorHash = lib.fakeHash;
  subPackages = [ "cmd/nbimg" ];
  ldflags = [ "-s" "-w" "-X main.version=${version}" ];

  meta = {
    description = "Turn a Nix store closure into network-boot artifacts";
    mainProgram = "nbimg";
  };
}
