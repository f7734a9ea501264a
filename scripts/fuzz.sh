#!/usr/bin/env bash
# Runs every parser's fuzz target for a short time ($FUZZTIME each, 15s by
# default): registration, NAR, compressor spec, kernel command line,
# cmdline.txt, dnsmasq values. Called by .ci/run; new inputs that fail are
# written under the package's testdata/fuzz by go test.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-15s}
targets=(
	"./nixstore FuzzParseRegistration"
	"./nixstore FuzzNAR"
	"./cmd/nbimg FuzzCompressorSpec"
	"./cmdline FuzzLine"
	"./nfsroot FuzzCmdline"
	"./netboot FuzzDnsmasq"
	"./netboot FuzzDnsmasqQuote"
)
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "-- $name ($pkg, $fuzztime)"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
done
