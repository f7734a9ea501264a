#!/usr/bin/env bash
# Benchmarks nbimg serve's TFTP and HTTP against dnsmasq's TFTP server,
# python3's http.server and, when installed (Debian package nginx), nginx
# on this machine, on loopback only: CLIENTS curl
# clients at once fetch a SIZE_MB file, ROUNDS times per server (servers
# alternate first and last between rounds), and the script prints the
# aggregate throughput (MB/s, median of rounds) and the servers' peak RSS.
#
# Usage: scripts/bench-serve.sh [NBIMG]   (default bin/nbimg)
# Environment:
#   BENCH_DIR        work directory (default /var/tmp/nbimg-bench-serve)
#   BENCH_SERVE_MB   file size in MB (default 100)
#   BENCH_CLIENTS    concurrent clients (default 8)
#   BENCH_ROUNDS     rounds per server (default 2)
#   BENCH_BLKSIZE    TFTP block size the clients ask for (default 1468)
set -euo pipefail
cd "$(dirname "$0")/.."

nbimg=${1:-bin/nbimg}
dir=${BENCH_DIR:-/var/tmp/nbimg-bench-serve}
size_mb=${BENCH_SERVE_MB:-100}
clients=${BENCH_CLIENTS:-8}
rounds=${BENCH_ROUNDS:-2}
blksize=${BENCH_BLKSIZE:-1468}

for t in curl dnsmasq python3; do
	command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || { echo "bench-serve: $t not found: run scripts/deps.sh" >&2; exit 1; }
done
dnsmasq=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
nginx=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
[ -n "$nginx" ] || echo "bench-serve: nginx not installed (apt-get install nginx): left out" >&2
[ -x "$nbimg" ] || { echo "bench-serve: $nbimg not built: make build" >&2; exit 1; }

mkdir -p "$dir/root"
file=$dir/root/initrd
if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" != $((size_mb * 1000000)) ]; then
	head -c $((size_mb * 1000000)) /dev/urandom >"$file"
fi
sum=$(sha256sum <"$file" | cut -d' ' -f1)

# Ports on loopback, chosen high to stay clear of real services.
tftp_port=16969 http_port=18080
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start NAME CMD...: runs a server in the background, records its PID.
start() {
	local name=$1; shift
	"$@" >"$dir/$name.log" 2>&1 &
	pids+=("$!")
	server_pid=$!
	local i
	for i in $(seq 100); do
		kill -0 "$server_pid" 2>/dev/null || break
		# HTTP servers: wait until they answer; TFTP ones: a moment.
		if [ -z "${ready_url:-}" ]; then sleep 0.5; return; fi
		if curl -s -r 0-0 -o /dev/null "$ready_url"; then return; fi
		sleep 0.1
	done
	echo "bench-serve: $name did not start:" >&2; cat "$dir/$name.log" >&2; exit 1
}

stop() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; }

# peak_rss PID: the peak RSS of PID plus its children's (nginx's workers).
peak_rss() {
	local p total=0 v
	for p in "$1" $(pgrep -P "$1" || true); do
		v=$(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

# Copies land in memory (not on disk, which would be what is measured).
out=$(mktemp -d /dev/shm/nbimg-bench-serve.XXXXXX)
trap 'cleanup; rm -rf "$out"' EXIT

# fetch URL: CLIENTS parallel curls; prints MB/s; checks every copy.
fetch() {
	local url=$1 start end i ok=1
	start=$(date +%s.%N)
	for i in $(seq "$clients"); do
		curl -sS --tftp-blksize "$blksize" -o "$out/$i" "$url" &
	done
	wait
	end=$(date +%s.%N)
	for i in $(seq "$clients"); do
		[ "$(sha256sum <"$out/$i" | cut -d' ' -f1)" = "$sum" ] || ok=0
		rm -f "$out/$i"
	done
	[ "$ok" = 1 ] || { echo "bench-serve: wrong bytes from $url" >&2; exit 1; }
	echo "$size_mb $clients $start $end" | awk '{printf "%.1f", $1 * $2 / ($4 - $3)}'
}

: >"$dir/results.txt"
run() { # run LABEL URL (the server is running)
	local mbs rss
	mbs=$(fetch "$2")
	rss=$(peak_rss "$server_pid")
	echo "$1 $mbs $rss" >>"$dir/results.txt"
	printf '  %-22s %8s MB/s  server peak RSS %s KiB\n' "$1" "$mbs" "$rss"
}

nbimg_tftp() {
	ready_url=
	start nbimg "$nbimg" serve --listen 127.0.0.1 --dhcp=false --nbd-port 0 --http-port 0 \
		--tftp-port "$tftp_port" --tftp-max-blksize 65464 --ipxe-dir "" "$dir/root"
	run nbimg-tftp "tftp://127.0.0.1:$tftp_port/initrd"
	stop
}
dnsmasq_tftp() {
	ready_url=
	start dnsmasq "$dnsmasq" --keep-in-foreground --conf-file=/dev/null --port=0 --user=root \
		--listen-address=127.0.0.1 --bind-interfaces --enable-tftp --tftp-port-range=30000,30999 \
		--tftp-root="$dir/root" --pid-file="$dir/dnsmasq.pid" --tftp-no-fail
	# dnsmasq serves TFTP on port 69 only.
	run dnsmasq-tftp "tftp://127.0.0.1:69/initrd"
	stop
}
nbimg_http() {
	ready_url=http://127.0.0.1:$http_port/initrd
	start nbimg "$nbimg" serve --listen 127.0.0.1 --dhcp=false --nbd-port 0 --tftp-port 0 \
		--http-port "$http_port" --ipxe-dir "" "$dir/root"
	run nbimg-http "http://127.0.0.1:$http_port/initrd"
	stop
}
python_http() {
	ready_url=http://127.0.0.1:$http_port/initrd
	start python python3 -m http.server --bind 127.0.0.1 --directory "$dir/root" "$http_port"
	run python-http "http://127.0.0.1:$http_port/initrd"
	stop
}

# nginx as Debian ships it, with a configuration of its own: one worker
# per core, sendfile, no access log, files from the same root.
nginx_http() {
	[ -n "$nginx" ] || return 0
	mkdir -p "$dir/nginx"
	cat >"$dir/nginx/nginx.conf" <<-EOF
	worker_processes auto;
	user root;
	pid $dir/nginx/nginx.pid;
	error_log $dir/nginx/error.log;
	events { worker_connections 256; }
	http {
		access_log off;
		sendfile on;
		client_body_temp_path $dir/nginx/body;
		proxy_temp_path $dir/nginx/proxy;
		fastcgi_temp_path $dir/nginx/fastcgi;
		uwsgi_temp_path $dir/nginx/uwsgi;
		scgi_temp_path $dir/nginx/scgi;
		server { listen 127.0.0.1:$http_port; root $dir/root; }
	}
	EOF
	ready_url=http://127.0.0.1:$http_port/initrd
	start nginx "$nginx" -c "$dir/nginx/nginx.conf" -g "daemon off;"
	run nginx-http "http://127.0.0.1:$http_port/initrd"
	stop
}

echo "== $clients clients x $size_mb MB, TFTP blksize $blksize, $rounds rounds"
for r in $(seq "$rounds"); do
	if [ $((r % 2)) = 1 ]; then nbimg_tftp; dnsmasq_tftp; nbimg_http; python_http; nginx_http
	else dnsmasq_tftp; nbimg_tftp; nginx_http; python_http; nbimg_http; fi
done

echo "== summary (median MB/s in all clients; peak RSS of the server)"
awk '{ n[$1]++; v[$1, n[$1]] = $2; r[$1] = $3 }
END {
	for (k in n) {
		cnt = n[k]; for (i = 1; i <= cnt; i++) a[i] = v[k, i]
		for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		med = (cnt % 2) ? a[(cnt + 1) / 2] : (a[cnt / 2] + a[cnt / 2 + 1]) / 2
		printf "%-14s %8.1f MB/s  %8d KiB\n", k, med, r[k]
	}
}' "$dir/results.txt" | sort
