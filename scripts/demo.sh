#!/usr/bin/env bash
# The quick-start demo: runs `nbimg netboot` on the fixture system built with
# real Nix, then boots the result in QEMU with the command line from the
# generated netboot.ipxe and waits for the fixture's stage-2 success marker
# (stage 2 checks the sha256 of every file in the store first).
#
#   scripts/demo.sh [FIXTURE_DIR]   (default testdata/fixture/out)
set -euo pipefail
cd "$(dirname "$0")/.."

fixture=${1:-testdata/fixture/out}
out=${DEMO_OUT:-out/demo}
marker=NBIMG-FIXTURE-OK
accel=${NBIMG_QEMU_ACCEL:-tcg}

if [ ! -e "$fixture/toplevel" ]; then
	echo "demo: no fixture system in $fixture: run 'make fixture' (needs nix-bin; see scripts/deps.sh)" >&2
	exit 1
fi
command -v qemu-system-x86_64 >/dev/null || { echo "demo: qemu-system-x86_64 not found: apt-get install qemu-system-x86" >&2; exit 1; }

echo "== nbimg netboot"
rm -rf "$out"
SOURCE_DATE_EPOCH=1 bin/nbimg --verbose netboot -o "$out" \
	--toplevel "$fixture/toplevel" --closure "$fixture/closure" \
	--comp "zstd -Xcompression-level 6"
ls -l "$out"
cat "$out/netboot.ipxe"

# The kernel line of netboot.ipxe, less the iPXE words and ${cmdline}.
# shellcheck disable=SC2016 # ${cmdline} is literal iPXE text
cmdline=$(sed -n 's/^kernel --name bzImage bzImage //p' "$out/netboot.ipxe" | sed 's/ *\${cmdline}$//')

echo "== booting in QEMU ($accel): $cmdline"
log=$out/console.log
timeout 300 qemu-system-x86_64 -machine "accel=$accel" -cpu max -m 512 -nographic -no-reboot \
	-kernel "$out/bzImage" -initrd "$out/initrd" -append "$cmdline" >"$log" 2>&1 </dev/null || true
if grep -q "$marker" "$log"; then
	grep "$marker" "$log" | tail -1
	echo "demo: the system booted from the nbimg initrd and its store checked out"
	dir=$(cd "$out" && pwd)
	cat <<EOT

The netboot artifacts are in $dir:
  bzImage, initrd, netboot.ipxe, manifest.json (sizes and sha256 of each file)

Serve them with one of (see examples/serving.md):
  nbimg serve (proxy DHCP, TFTP and HTTP in one process; iPXE from Debian's ipxe):
    sudo bin/nbimg serve --interface eth0 $dir
  pixiecore (proxy DHCP + its own HTTP/TFTP):
    pixiecore boot $dir/bzImage $dir/initrd --cmdline "$cmdline"
  dnsmasq (proxy DHCP + TFTP, chain-loading iPXE into netboot.ipxe):
    dnsmasq -d --port=0 --dhcp-range=192.168.1.0,proxy --enable-tftp --tftp-root=$dir \\
      --dhcp-userclass=set:ipxe,iPXE --pxe-service=tag:ipxe,x86PC,NixOS,netboot.ipxe \\
      --pxe-service=tag:!ipxe,x86PC,iPXE,undionly.kpxe
    (copy /usr/lib/ipxe/undionly.kpxe from Debian's ipxe package into $dir)
  any HTTP server, with iPXE chain-loading the script:
    (cd $dir && python3 -m http.server 8080)
    iPXE> chain http://SERVER:8080/netboot.ipxe
EOT
else
	echo "demo: no success marker; console log tail:" >&2
	tail -40 "$log" >&2
	exit 1
fi
