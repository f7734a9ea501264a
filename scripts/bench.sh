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
#   BENCH_CACHE    zstd level of the rebuild-cache comparison, or 0 to skip it (default 19)
#   BENCH_CORPUS_ONLY=1  only build the corpus
#
# The netboot comparison builds a NixOS-shaped system over the large corpus
# (a toplevel whose closure is every package, Debian's kernel and initrd)
# and runs `nbimg netboot` against the NixOS way on the same closure:
# mksquashfs as make-squashfs.nix calls it, then a cpio of the image
# compressed with `zstd -10` appended to the stage-1 initrd (makeInitrdNG).
#
# The rebuild-cache comparison builds the same kind of system over the small
# corpus, then a second store in which one store path changed (one file of
# it, so its NAR hash), and times at level BENCH_CACHE: the store image
# without a cache and with a cold cache, then the changed system's image
# with the first system's cache and without one (the two must be
# byte-identical), the same for `nbimg netboot`, and mksquashfs's image of
# the first system as make-squashfs.nix makes it (for the size).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${BENCH_DIR:-/var/tmp/nbimg-bench}
size_mb=${BENCH_SIZE_MB:-1300}
small_mb=${BENCH_SMALL_MB:-200}
rounds=${BENCH_ROUNDS:-2}
levels=${BENCH_LEVELS-6 19}
netboot_level=${BENCH_NETBOOT:-6}
cache_level=${BENCH_CACHE:-19}
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
	printf '%s %s %s %s %s\n' "$label" "$wall" "$(echo "$user + $sys" | bc)" "$rss" "$(stat -c %s "$out")" >>"${results:-$dir/results.txt}"
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

# make_system [CORPUS NAME] prints the toplevel of a NixOS-shaped system
# over a corpus (default large), in a store root of its own ($dir/NAME-root,
# hard links), after writing its closureInfo to $dir/NAME-closure with
# nbimg closure (not timed).
make_system() {
	local corpus=${1:-large} name=${2:-system} root store top
	root=$dir/$name-root
	store=$root/nix/store
	top=1bnch000000000000000000000000000-nixos-system-bench-1.0
	if [ ! -f "$root/.done" ]; then
		rm -rf "$root" && mkdir -p "$store"
		cp -al "$dir/corpus-$corpus/." "$store/"
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
	if [ ! -f "$dir/$name-closure/registration" ]; then
		rm -rf "$dir/$name-closure"
		"$dir/nbimg-cgo" --quiet closure --store-root "$root" -o "$dir/$name-closure" "/nix/store/$top"
	fi
	echo "/nix/store/$top"
}

# make_changed NAME TOP: a copy of $dir/NAME-root in which one store path of
# about 4 MB has one file changed (a line appended), and its closureInfo.
make_changed() {
	local name=$1 top=$2 root=$dir/$1-root new=$dir/$1-changed-root pkg file
	if [ ! -f "$new/.done" ]; then
		rm -rf "$new" && mkdir -p "$new"
		cp -al "$root/." "$new/"
		pkg=$(cd "$root/nix/store" && du -sb --apparent-size -- */ | grep -v nixos-system-bench |
			awk '{ d = $1 - 4000000; if (d < 0) d = -d; print d, $2 }' | sort -n | head -1 | cut -d' ' -f2)
		pkg=${pkg%/}
		rm -rf "$new/nix/store/$pkg"
		cp -a "$root/nix/store/$pkg" "$new/nix/store/$pkg"
		file=$(find "$new/nix/store/$pkg" -type f | sort | head -1)
		echo "changed by nbimg's benchmark" >>"$file"
		echo "$pkg" >"$new/changed-path"
		touch "$new/.done"
	fi
	if [ ! -f "$dir/$name-changed-closure/registration" ]; then
		rm -rf "$dir/$name-changed-closure"
		"$dir/nbimg-cgo" --quiet closure --store-root "$new" -o "$dir/$name-changed-closure" "$top"
	fi
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

if [ "$cache_level" != 0 ]; then
	results=$dir/cache-results.txt
	: >"$results"
	top=$(make_system small cache-system)
	make_changed cache-system "$top"
	r1=$dir/cache-system-root c1=$dir/cache-system-closure
	r2=$dir/cache-system-changed-root c2=$dir/cache-system-changed-closure
	comp="zstd -Xcompression-level $cache_level"
	echo "== rebuild cache, zstd level $cache_level: $(wc -l <"$c1/store-paths") store paths ($(du -sh --apparent-size "$r1/nix/store" | cut -f1)), $(cat "$r2/changed-path") changed; processors $procs, $rounds rounds"
	sq() { # sq LABEL OUT ROOT CLOSURE [--cache DIR]
		local label=$1 out=$2 root=$3 closure=$4; shift 4
		measure "$label" "$out" "$dir/nbimg-cgo" --quiet squashfs -o "$out" --closure "$closure" --store-root "$root" \
			--comp "$comp" --processors "$procs" "$@"
	}
	nbc() { # nbc LABEL [--cache DIR]
		local label=$1; shift
		rm -rf "$dir/cache-netboot"
		measure "$label" "$dir/cache-netboot/initrd" "$dir/nbimg-cgo" --quiet netboot -o "$dir/cache-netboot" \
			--toplevel "$top" --store-root "$r2" --closure "$c2" --comp "$comp" --processors "$procs" "$@"
	}
	for r in $(seq "$rounds"); do
		if [ "$r" = 1 ]; then
			# The store image as make-squashfs.nix makes it, for the size.
			rm -rf "$dir/cache-ref-work" && mkdir "$dir/cache-ref-work"
			cp "$c1/registration" "$dir/cache-ref-work/nix-path-registration"
			mapfile -t paths < <(sed "s|^|$r1|" "$c1/store-paths")
			measure "mksquashfs-store" "$dir/cache-ref.img" mksquashfs "$dir/cache-ref-work/nix-path-registration" "${paths[@]}" \
				"$dir/cache-ref.img" -noappend -quiet -no-progress -no-hardlinks -keep-as-directory -all-root -b 1048576 \
				-comp zstd -Xcompression-level "$cache_level" -processors "$procs" -root-mode 0755
		fi
		sq store-nocache "$dir/cache-nocache.img" "$r1" "$c1"
		rm -rf "$dir/cache-dir"
		sq store-cold-cache "$dir/cache-cold.img" "$r1" "$c1" --cache "$dir/cache-dir"
		cmp "$dir/cache-nocache.img" "$dir/cache-cold.img" || { echo "bench: cold cache: image differs" >&2; exit 1; }
		rm -rf "$dir/cache-dir1" && cp -a "$dir/cache-dir" "$dir/cache-dir1"
		sq store-changed-nocache "$dir/cache-changed-nocache.img" "$r2" "$c2"
		sq store-changed-warm "$dir/cache-changed-warm.img" "$r2" "$c2" --cache "$dir/cache-dir"
		cmp "$dir/cache-changed-nocache.img" "$dir/cache-changed-warm.img" || { echo "bench: warm cache: image differs" >&2; exit 1; }
		nbc netboot-changed-nocache
		cp "$dir/cache-netboot/initrd" "$dir/cache-netboot-nocache.initrd"
		rm -rf "$dir/cache-dir" && cp -a "$dir/cache-dir1" "$dir/cache-dir"
		nbc netboot-changed-warm --cache "$dir/cache-dir"
		cmp "$dir/cache-netboot-nocache.initrd" "$dir/cache-netboot/initrd" || { echo "bench: warm netboot: initrd differs" >&2; exit 1; }
		echo "  (round $r done; cache $(du -sh "$dir/cache-dir1" | cut -f1))"
	done
	echo "== rebuild cache summary (median of rounds; ratio to the same build without a cache, or size to mksquashfs)"
	printf '%-24s %8s %8s %10s %12s | %6s %6s %7s\n' run "wall s" "cpu s" "rss MiB" size wall cpu size
	awk '
	{ n[$1]++; w[$1, n[$1]] = $2; c[$1, n[$1]] = $3; m[$1, n[$1]] = $4; s[$1] = $5 }
	function med(a, k,   i, j, t, v, cnt) {
		cnt = n[k]; for (i = 1; i <= cnt; i++) v[i] = a[k, i]
		for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
		return (cnt % 2) ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
	}
	END {
		ref["store-cold-cache"] = "store-nocache"; ref["store-changed-warm"] = "store-changed-nocache"
		ref["netboot-changed-warm"] = "netboot-changed-nocache"
		for (k in n) {
			wr = "-"; cr = "-"; sr = "-"
			if (k in ref) { wr = sprintf("%.4f", med(w, k) / med(w, ref[k])); cr = sprintf("%.4f", med(c, k) / med(c, ref[k])) }
			if (k ~ /^store-(nocache|cold-cache)$/) sr = sprintf("%.4f", s[k] / s["mksquashfs-store"])
			printf "%-24s %8.2f %8.2f %10.1f %12d | %6s %6s %7s\n", k, med(w, k), med(c, k), med(m, k) / 1024, s[k], wr, cr, sr
		}
	}' "$results" | sort
	unset results
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
