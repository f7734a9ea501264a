# nbimg — build, test, demo and benchmark.
#
#   make demo    what `make deps` does, then build nbimg and the fixture
#                system, run `nbimg netboot` on it and boot the result in QEMU
#   make test    what `make deps` does, then build the fixture with Nix (when
#                nix-build exists) and run every test, QEMU boots included
#   make bench   compare nbimg with mksquashfs (and the NixOS way) on a large
#                corpus of hard links to this machine's Debian package files,
#                made once under $BENCH_DIR (default /var/tmp/nbimg-bench),
#                and nbimg serve with dnsmasq's TFTP and python3's http.server

GO      ?= go
BIN     := bin/nbimg
FIXTURE ?= $(CURDIR)/testdata/fixture/out
FIXTURE_AARCH64 ?= $(CURDIR)/testdata/fixture/out-aarch64
export NBIMG_FIXTURE := $(FIXTURE)
export NBIMG_FIXTURE_AARCH64 := $(FIXTURE_AARCH64)

.PHONY: all build deps test test-short test-race lint fixture demo bench clean

all: build

# bin/nbimg.
build:
	$(GO) build -o $(BIN) ./cmd/nbimg
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(dir $(BIN))nbimg-stage0 ./cmd/nbimg-stage0

# As root: installs the Debian packages the checkers need (apt-get) and sets
# build-users-group and sandbox (and nix-command when no
# experimental-features line exists) in /etc/nix/nix.conf, keeping its other
# lines. Otherwise it only names what is missing. A failure does not stop
# make: the tests that need a missing tool skip.
deps:
	@bash scripts/deps.sh || echo "continuing without them: tests that need them will skip"

# The fixture system needs real Nix; without it the tests that use it skip
# (or fail when NBIMG_REQUIRE_TOOLS=1). Its aarch64 twin also needs Debian's
# arm64 packages (fetched as root the first time).
fixture:
	@if command -v nix-build >/dev/null 2>&1; then \
		bash testdata/fixture/build.sh "$(FIXTURE)" && \
		{ bash testdata/fixture/build.sh --arch aarch64 "$(FIXTURE_AARCH64)" || \
			echo "the aarch64 fixture is not built: its tests will skip"; }; \
	else \
		echo "nix-build not found: the fixture system is not built (apt-get install nix-bin)"; \
	fi

test: deps fixture
	$(GO) test -timeout 60m ./...

# The tests without QEMU boots and other slow cases; nothing is installed
# or built first.
test-short:
	$(GO) test -timeout 30m -short ./...

# test-short under the race detector (as CI runs it).
test-race:
	$(GO) test -timeout 30m -race -short ./...

# gofmt (fails listing the files), go vet, and staticcheck when installed.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null 2>&1; then staticcheck ./...; \
	else echo "staticcheck not installed: go install honnef.co/go/tools/cmd/staticcheck@latest"; fi

demo: deps build fixture
	bash scripts/demo.sh "$(FIXTURE)"

bench: build
	bash scripts/bench.sh
	bash scripts/bench-serve.sh $(BIN)

# Removes bin/ only (not the fixture, out/ or the benchmark corpus).
clean:
	rm -rf bin
