#!/usr/bin/env bash
# Benchmarks nbimg squashfs against mksquashfs on the same corpus, in one run,
# alternating the two tools, and prints wall time, CPU time, peak RSS and
# output size with nbimg/mksquashfs ratios.
#
# The corpus is made of this machine's Debian packages: one directory per
# package, named like a store path, holding hard links to the package's files
# under /usr (nothing is copied). It is built once under $BENCH_DIR.
#
# Environment:
#   BENCH_DIR      work directory (default /var/tmp/nbimg-bench)
#   BENCH_SIZE_MB  corpus size for level 6 (default 1300)
#   BENCH_SMALL_MB corpus size for level 19 (default 200)
#   BENCH_ROUNDS   runs per tool and setting (default 2)
#   BENCH_LEVELS   zstd levels to run (default "6 19"; empty for none)
#   BENCH_PROCS    --processors for both tools (default: nproc)
#   BENCH_NETBOOT  zstd level of the netboot comparison, or 0 to skip it (default 6)
#   BENCH_CORPUS_ONLY=1  only build the corpus
#
# The netboot comparison builds a NixOS-shaped system over the large corpus
# (a toplevel whose closure is every package, Debian's kernel and initrd)
# and runs `nbimg netboot` against the NixOS way on the same closure:
# mksquashfs as make-squashfs.nix calls it, then a cpio of the image
# compressed with `zstd -10` appended to the stage-1 initrd (makeInitrdNG).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${BENCH_DIR:-/var/tmp/nbimg-bench}
size_mb=${BENCH_SIZE_MB:-1300}
small_mb=${BENCH_SMALL_MB:-200}
rounds=${BENCH_ROUNDS:-2}
levels=${BENCH_LEVELS-6 19}
netboot_level=${BENCH_NETBOOT:-6}
procs=${BENCH_PROCS:-$(nproc)}

for t in mksquashfs /usr/bin/time cpio zstd; do
	command -v "$t" >/dev/null || { echo "bench: $t not found: run scripts/deps.sh" >&2; exit 1; }
done
mkdir -p "$dir"

# make_corpus DEST MB: one directory per Debian package until MB megabytes.
make_corpus() {
	local dest=$1 limit=$(( $2 * 1024 * 1024 )) total=0 pkg name hash list bytes
	if [ -f "$dest/.done" ]; then return; fi
	rm -rf "$dest" && mkdir -p "$dest"
	list=$(mktemp)
	while read -r pkg; do
		dpkg -L "$pkg" 2>/dev/null | while read -r f; do
			case $f in /usr/local/*|/usr/share/doc/*) continue ;; esac
			if [ -L "$f" ] || [ -f "$f" ]; then printf '%s\n' "$f"; fi
		done | sort -u >"$list"
		[ -s "$list" ] || continue
		bytes=$(tr '\n' '\0' <"$list" | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
		hash=$(printf '%s' "$pkg" | sha256sum | tr -dc 'a-df-np-sv-z0-9' | cut -c1-32)
		name="$hash-${pkg%%:*}"
		mkdir -p "$dest/$name"
		tr '\n' '\0' <"$list" | (cd "$dest/$name" || exit 1; xargs -0 cp -al --parents -t . 2>/dev/null || true)
		total=$(( total + bytes ))
		[ "$total" -ge "$limit" ] && break
	done < <(dpkg-query -W -f='${Installed-Size}\t${Package}\n' | awk '$1 < 150000' | cut -f2 | sort)
	rm -f "$list"
	touch "$dest/.done"
}

echo "== corpus"
make_corpus "$dir/corpus-large" "$size_mb"
make_corpus "$dir/corpus-small" "$small_mb"
for c in large small; do
	printf '%s: %s in %s files, %s packages\n' "$c" \
		"$(du -sh --apparent-size "$dir/corpus-$c" | cut -f1)" \
		"$(find "$dir/corpus-$c" -type f | wc -l)" \
		"$(find "$dir/corpus-$c" -mindepth 1 -maxdepth 1 -type d | wc -l)"
done

[ -n "${BENCH_CORPUS_ONLY:-}" ] && exit 0

echo "== binaries"
go build -o "$dir/nbimg-cgo" ./cmd/nbimg
CGO_ENABLED=0 go build -o "$dir/nbimg-purego" ./cmd/nbimg
mksquashfs -version | head -1

export SOURCE_DATE_EPOCH=1

# measure LABEL OUT CMD...: runs CMD under GNU time, appends a result row.
measure() {
	local label=$1 out=$2; shift 2
	rm -f "$out"
	sync
	/usr/bin/time -f '%e %U %S %M' -o "$dir/time.txt" "$@" >/dev/null 2>"$dir/stderr.txt" ||
		{ echo "bench: $label failed:" >&2; cat "$dir/stderr.txt" >&2; exit 1; }
	read -r wall user sys rss <"$dir/time.txt"
	printf '%s %s %s %s %s\n' "$label" "$wall" "$(echo "$user + $sys" | bc)" "$rss" "$(stat -c %s "$out")" >>"$dir/results.txt"
	printf '  %-22s wall %6ss  cpu %7ss  rss %7s KiB  size %s\n' "$label" "$wall" "$(echo "$user + $sys" | bc)" "$rss" "$(stat -c %s "$out")"
}

: >"$dir/results.txt"
for level in $levels; do
	corpus=$dir/corpus-large
	[ "$level" -ge 15 ] && corpus=$dir/corpus-small
	echo "== zstd level $level on $(basename "$corpus"), processors $procs, $rounds rounds"
	ref() {
		measure "mksquashfs-$level" "$dir/ref.img" mksquashfs "$corpus" "$dir/ref.img" -noappend -quiet -no-progress \
			-no-hardlinks -all-root -no-xattrs -b 1048576 -comp zstd -Xcompression-level "$level" -processors "$procs"
	}
	for r in $(seq "$rounds"); do
		# The reference runs first in odd rounds and last in even ones, so a
		# machine that slows down under sustained load favours neither.
		if [ $((r % 2)) = 1 ]; then ref; fi
		measure "nbimg-$level" "$dir/nbimg.img" "$dir/nbimg-cgo" --quiet squashfs -o "$dir/nbimg.img" \
			--no-hardlinks --all-root --block-size 1048576 --comp "zstd -Xcompression-level $level" --processors "$procs" "$corpus"
		measure "nbimg-purego-$level" "$dir/nbimg.img" "$dir/nbimg-purego" --quiet squashfs -o "$dir/nbimg.img" \
			--no-hardlinks --all-root --block-size 1048576 --comp "zstd -Xcompression-level $level" --processors "$procs" "$corpus"
		if [ $((r % 2)) = 0 ]; then ref; fi
		echo "  (round $r done)"
	done
done

# make_system prints the toplevel of a NixOS-shaped system over the large
# corpus, in a store root of its own (hard links), after writing its
# closureInfo with nbimg closure (not timed).
make_system() {
	local root=$dir/system-root store top
	store=$root/nix/store
	top=1bnch000000000000000000000000000-nixos-system-bench-1.0
	if [ ! -f "$root/.done" ]; then
		rm -rf "$root" && mkdir -p "$store"
		cp -al "$dir/corpus-large/." "$store/"
		rm -f "$store/.done"
		mkdir "$store/$top"
		cp "$(find /boot -maxdepth 1 -name 'vmlinuz-*' | sort | tail -1)" "$store/$top/kernel"
		cp "$(find /boot -maxdepth 1 -name 'initrd.img-*' | sort | tail -1)" "$store/$top/initrd"
		printf '#!/bin/sh\necho stage 2\n' >"$store/$top/init"
		chmod 0755 "$store/$top/init"
		echo "console=ttyS0 loglevel=4" >"$store/$top/kernel-params"
		# The toplevel refers to every package, so its closure is the corpus.
		find "$store" -mindepth 1 -maxdepth 1 ! -name "$top" -printf '/nix/store/%f\n' | sort >"$store/$top/packages"
		touch "$root/.done"
	fi
	if [ ! -f "$dir/system-closure/registration" ]; then
		rm -rf "$dir/system-closure"
		"$dir/nbimg-cgo" --quiet closure --store-root "$root" -o "$dir/system-closure" "/nix/store/$top"
	fi
	echo "/nix/store/$top"
}

if [ "$netboot_level" != 0 ]; then
	top=$(make_system)
	root=$dir/system-root
	echo "== netboot, zstd level $netboot_level: $(wc -l <"$dir/system-closure/store-paths") store paths, processors $procs, $rounds rounds"
	nb() {
		rm -rf "$dir/nbimg-netboot"
		measure "nbimg-netboot" "$dir/nbimg-netboot/initrd" "$dir/nbimg-cgo" --quiet netboot -o "$dir/nbimg-netboot" \
			--toplevel "$top" --store-root "$root" --closure "$dir/system-closure" \
			--comp "zstd -Xcompression-level $netboot_level" --processors "$procs"
	}
	for r in $(seq "$rounds"); do
		# Same alternation as above: odd rounds start with the NixOS way.
		if [ $((r % 2)) = 0 ]; then nb; fi
		measure "nixos-way-netboot" "$dir/nixos-initrd" bash scripts/nixos-netboot.sh "$dir/system-closure" "$root" \
			"$root$top/initrd" "$netboot_level" "$procs" "$dir/nixos-initrd"
		if [ $((r % 2)) = 1 ]; then nb; fi
		echo "  (round $r done)"
	done
fi

echo "== summary (median of rounds; ratio = nbimg / mksquashfs, or / the NixOS way for netboot; size of the image or the initrd)"
printf '%-22s %8s %8s %10s %12s | %6s %6s %6s %7s\n' run "wall s" "cpu s" "rss MiB" size wall cpu rss size
awk '
{ n[$1]++; w[$1, n[$1]] = $2; c[$1, n[$1]] = $3; m[$1, n[$1]] = $4; s[$1] = $5 }
function med(a, k,   i, j, t, v, cnt) {
	cnt = n[k]; for (i = 1; i <= cnt; i++) v[i] = a[k, i]
	for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
	return (cnt % 2) ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
}
END {
	for (k in n) {
		split(k, parts, "-"); level = parts[length(parts)]; ref = "mksquashfs-" level
		if (k ~ /netboot/) ref = "nixos-way-netboot"
		printf "%-22s %8.2f %8.2f %10.1f %12d | %6.3f %6.3f %6.3f %7.4f\n", k, med(w, k), med(c, k), med(m, k) / 1024, s[k],
			med(w, k) / med(w, ref), med(c, k) / med(c, ref), med(m, k) / med(m, ref), s[k] / s[ref]
	}
}' "$dir/results.txt" | sort
