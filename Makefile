# The README's two commands: `make run` and `make test`.
GO       ?= go
BIN      := bin/gateway
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
PKGS     := ./...

.PHONY: all build run test test-race bench bench-e2e fuzz lint deps image clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/gateway

## run: start the gateway on the embedded defaults (dev issuer, local metadata, demo upstream)
run: build
	./$(BIN) serve --config gateway.yaml

## deps: install what the tests need from Debian's packages: redis-server, and chromium for the browser test
deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing redis-server from Debian's packages"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "redis-server is required by the tests: install it (apt-get install redis-server) and re-run"; exit 1; \
	  fi; }
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing chromium from Debian's packages (the browser test, seed 002)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is not installed: TestBrowserSPAReadsItsOwnMetadata will skip (apt-get install chromium to run it)"; \
	  fi; }

## test: every test, with the race detector, on a fresh machine
test: deps
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 10m $(PKGS)
	$(GO) test -count=1 -run 'Allocat' ./proxy/ ./internal/metrics/  # exact allocation budgets (the race detector's pools are lossy)
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 ./...

## bench: the gateway against a bare httputil.ReverseProxy, in the same run
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./proxy/ ./cache/

## bench-e2e: the gateway and a bare httputil.ReverseProxy as real processes, interleaved under the same load: ratios, latency, CPU/request, memory/caller (docs/benchmarks.md)
bench-e2e: deps
	CGO_ENABLED=0 $(GO) run -trimpath ./internal/benche2e/cmd/bench-e2e -go $(GO)

## fuzz: each fuzz target for FUZZTIME (the request, credential, header, path template, policy query and config parsers); -fuzz takes one target per run
FUZZTIME ?= 30s
# Minimising each new input for long stalls the fuzzer at 0 execs/s on 2 cores.
FUZZFLAGS ?= -fuzzminimizetime 100x
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParsePath$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./proxy/canon/
	$(GO) test -run '^$$' -fuzz '^FuzzFoldPrefix$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./proxy/canon/
	$(GO) test -run '^$$' -fuzz '^FuzzTemplate$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./proxy/canon/
	$(GO) test -run '^$$' -fuzz '^FuzzQuery$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./proxy/expr/
	$(GO) test -run '^$$' -fuzz '^FuzzBearerToken$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./proxy/
	$(GO) test -run '^$$' -fuzz '^FuzzMetadataHeaders$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./proxy/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./internal/config/

lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt needed"; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest $(PKGS)

image:
	docker build -f deploy/Dockerfile --build-arg VERSION=$(VERSION) -t gateway:$(VERSION) .

clean:
	rm -rf bin
