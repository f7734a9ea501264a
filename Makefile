# nbimg — build, test, demo and benchmark.
#
#   make demo    build the fixture system, run nbimg on it, boot the result
#   make test    install the checkers' Debian packages (as root), build the
#                fixture with Nix, then run every test
#   make bench   compare nbimg with mksquashfs (and the NixOS way) on a large
#                corpus built from this machine's Debian packages, and nbimg
#                serve with dnsmasq's TFTP and python3's http.server

GO      ?= go
BIN     := bin/nbimg
FIXTURE ?= $(CURDIR)/testdata/fixture/out
export NBIMG_FIXTURE := $(FIXTURE)

.PHONY: all build deps test test-short test-race lint fixture demo bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/nbimg

# Installs the Debian packages the checkers need (as root), or names them.
deps:
	@bash scripts/deps.sh || echo "continuing without them: tests that need them will skip"

# The fixture system needs real Nix; without it the tests that use it skip
# (or fail when NBIMG_REQUIRE_TOOLS=1).
fixture:
	@if command -v nix-build >/dev/null 2>&1; then \
		bash testdata/fixture/build.sh "$(FIXTURE)"; \
	else \
		echo "nix-build not found: the fixture system is not built (apt-get install nix-bin)"; \
	fi

test: deps fixture
	$(GO) test -timeout 60m ./...

test-short:
	$(GO) test -short ./...

test-race:
	$(GO) test -race -short ./...

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

clean:
	rm -rf bin
