#!/usr/bin/env bash
# Installs (as root) or names (otherwise) the Debian packages that nbimg's
# tests, demo and benchmarks use as independent checkers, and sets up Nix
# for a root user without a daemon.
#
#   scripts/deps.sh          install what is missing (root), or print the command
#   scripts/deps.sh --check  only report what is missing; exit 1 if anything is
set -euo pipefail

packages=(
	squashfs-tools squashfs-tools-ng qemu-system-x86 ipxe-qemu
	linux-image-cloud-amd64 busybox-static nix-bin pxelinux syslinux-common
	dnsmasq shellcheck cpio libarchive-tools kexec-tools zstd xz-utils
	time bc nfs-ganesha nfs-ganesha-vfs rpcbind
	# store over the network (NBD, dm-verity, HTTP)
	nbdkit nbd-server nbd-client cryptsetup-bin python3
	# UEFI: firmware, UKI stub, signing checks, ESP images, iPXE EFI builds
	ovmf systemd-boot-efi sbsigntool dosfstools mtools binutils ipxe
	# UEFI tests: the snakeoil key is decrypted with openssl; the UEFI PXE
	# boot runs dnsmasq and QEMU in a network namespace (ip netns, tap)
	openssl
	iproute2
	# aarch64 guests
	qemu-system-arm qemu-efi-aarch64
	# arm64 UKIs: objdump/objcopy that read PE files for aarch64 (pei-aarch64-little)
	binutils-aarch64-linux-gnu
	# the closureInfo oracle's builder (internal/check/closureinfo.nix)
	jq
	# binary-cache QEMU acceptance: the client's ext4 disk (mkfs.ext4)
	e2fsprogs
	# nbimg serve: NBD client (qemu-img), TFTP client, test network namespaces
	qemu-utils curl iproute2
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

nix_conf_ok() {
	[ -f /etc/nix/nix.conf ] &&
		grep -Eq '^build-users-group *= *$' /etc/nix/nix.conf &&
		grep -Eq '^sandbox *= *false' /etc/nix/nix.conf
}

if [ "${1:-}" = "--check" ]; then
	rc=0
	if [ ${#missing[@]} -gt 0 ]; then
		echo "missing Debian packages: ${missing[*]}"
		echo "install them with: sudo scripts/deps.sh"
		rc=1
	fi
	if ! nix_conf_ok; then
		echo "Nix is not set up for root without a daemon: run sudo scripts/deps.sh"
		rc=1
	fi
	exit $rc
fi

if [ "$(id -u)" != 0 ]; then
	if [ ${#missing[@]} -gt 0 ] || ! nix_conf_ok; then
		echo "run as root to install: apt-get install -y ${missing[*]}"
		echo "and write /etc/nix/nix.conf with 'build-users-group =' and 'sandbox = false'"
		exit 1
	fi
	exit 0
fi

if [ ${#missing[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q "${missing[@]}"
fi

if ! nix_conf_ok; then
	# Merge the two settings single-user root Nix needs into the existing
	# file: other lines are kept, a differing value of the same key is
	# replaced.
	mkdir -p /etc/nix
	conf=/etc/nix/nix.conf
	touch "$conf"
	tmp=$(mktemp "$conf.XXXXXX")
	grep -Ev '^[[:space:]]*(build-users-group|sandbox)[[:space:]]*=' "$conf" >"$tmp" || true
	{
		echo "build-users-group ="
		echo "sandbox = false"
	} >>"$tmp"
	if ! grep -Eq '^[[:space:]]*experimental-features[[:space:]]*=' "$tmp"; then
		echo "experimental-features = nix-command" >>"$tmp"
	fi
	chmod 0644 "$tmp"
	mv "$tmp" "$conf"
	echo "set build-users-group and sandbox in $conf for single-user Nix as root"
fi
