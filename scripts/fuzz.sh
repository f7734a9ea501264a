#!/usr/bin/env bash
# Runs every parser's fuzz target for a bounded number of inputs:
# registration, NAR, compressor spec, kernel command line,
# cmdline.txt, dnsmasq values; what the servers and stage 0 read from the
# network (DHCP, TFTP, NBD, stage 0's configuration and DHCP), UKIs,
# narinfo files and per-system store URLs. Called by .ci/run; new inputs that fail are
# written under the package's testdata/fuzz by go test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each target runs for a fixed number of inputs ($FUZZSCALE times the
# count below, about 10-15 s each here) rather than a fixed time: go test's
# time limit can end a run with "context deadline exceeded" while a worker
# is still busy, which is no finding. A real finding writes the failing
# input under the package's testdata/fuzz/NAME and fails the script.
scale=${FUZZSCALE:-1}
targets=(
	"./nixstore FuzzParseRegistration 3000"
	"./nixstore FuzzNAR 8000"
	"./cmd/nbimg FuzzCompressorSpec 40000"
	"./cmdline FuzzLine 300000"
	"./nfsroot FuzzCmdline 200000"
	"./netboot FuzzDnsmasq 200000"
	"./netboot FuzzDnsmasqQuote 200000"
	"./serve/dhcp FuzzHandle 150000"
	"./serve/dhcp FuzzHandleLease 150000"
	"./serve/tftp FuzzParseRequest 60000"
	"./serve/nbd FuzzServeConn 120000"
	"./stage0/nbd FuzzHandshake 150000"
	"./stage0/nbd FuzzNetlink 300000"
	"./stage0 FuzzParseConfig 60000"
	"./stage0/dhcp FuzzParse 300000"
	"./uki FuzzParse 50000"
	"./builder FuzzPXEStoreURL 40000"
	"./binarycache FuzzParseNarInfo 120000"
)
for t in "${targets[@]}"; do
	read -r pkg name count <<<"$t"
	n=$((count * scale))
	echo "-- $name ($pkg, ${n} inputs)"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "${n}x" "$pkg"
done
