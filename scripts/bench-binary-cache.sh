#!/bin/bash
# Times `nbimg binary-cache` against `nix copy --to file://` on the fixture
# closure (one run each, GNU time: wall, user, system seconds) and prints the
# bytes of the NAR files each wrote. Needs the fixture (make fixture), Nix,
# GNU time and a Nix signing key:
#
#   nix-store --generate-binary-cache-key bench-1 sk pk
#   go build -o nbimg ./cmd/nbimg
#   scripts/bench-binary-cache.sh WORKDIR   (holding nbimg and sk)
set -uo pipefail
cd "${1:?usage: bench-binary-cache.sh WORKDIR}" || exit 1
fixture=${NBIMG_FIXTURE:-$(dirname "$0")/../testdata/fixture/out}
T=$(readlink -f "$fixture/toplevel")
C=$fixture/closure
run() { # name cmd...
	local name=$1
	shift
	rm -rf "b2-$name"
	/usr/bin/time -f "%e %U %S" -o "time-$name" "$@" >/dev/null 2>"err-$name"
	local narsize wall user sys
	narsize=$(du -cb "b2-$name"/nar/* | tail -1 | cut -f1)
	read -r wall user sys <"time-$name"
	printf '%s\twall %s s\tuser %s s\tsys %s s\t%s bytes\tload %s\n' "$name" "$wall" "$user" "$sys" "$narsize" "$(cut -d' ' -f1 /proc/loadavg)"
}
run nbimg-zstd3 ./nbimg binary-cache -o b2-nbimg-zstd3 --toplevel "$T" --closure "$C" --sign-key sk --compression zstd --zstd-level 3
run nix-zstd nix copy --to "file://$PWD/b2-nix-zstd?compression=zstd&secret-key=$PWD/sk" "$T"
run nbimg-none ./nbimg binary-cache -o b2-nbimg-none --toplevel "$T" --closure "$C" --sign-key sk --compression none
run nix-none nix copy --to "file://$PWD/b2-nix-none?compression=none&secret-key=$PWD/sk" "$T"
run nbimg-zstd19 ./nbimg binary-cache -o b2-nbimg-zstd19 --toplevel "$T" --closure "$C" --sign-key sk --compression zstd
run nbimg-xz ./nbimg binary-cache -o b2-nbimg-xz --toplevel "$T" --closure "$C" --sign-key sk
run nix-xz nix copy --to "file://$PWD/b2-nix-xz?secret-key=$PWD/sk" "$T"
