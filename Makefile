# dsub developer targets. `make help` lists them.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
GOBIN   := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)

.PHONY: help setup setup-demo build test unit lint demo demo-down bench fuzz clean screenshots

help:
	@echo "make build     build bin/dsub (version stamped: $(VERSION))"
	@echo "make test      setup + lint + go test -race ./... (integration tests use testenv)"
	@echo "make demo      start a local 4-host sshd cluster and run dsub across it"
	@echo "make demo-down remove the demo cluster"
	@echo "make bench     run bench/ against peer tools (see docs/BENCHMARKS.md)"
	@echo "make fuzz      run each fuzz target for FUZZTIME (default 30s)"
	@echo "make screenshots  refresh docs/img: the --ui page of a real run, and a report"

setup:
	@./scripts/setup.sh test

# The demo needs only debootstrap, OpenSSH and the Go modules.
setup-demo:
	@./scripts/setup.sh demo

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/dsub ./cmd/dsub

lint: setup
	$(GO) vet ./...
	staticcheck ./...
	@$(GO) mod tidy -diff || (echo "go mod tidy would change go.mod/go.sum" && exit 1)

unit:
	$(GO) test -race -short ./...

# The -short pass proves the suite stands without Docker (make unit: CI is
# unset for it, since under CI=true a test that needs Docker fails rather
# than skips), then the full suite runs against real sshd with CI=true, as
# in CI: a test whose prerequisite (Docker, root, the ssh client) is
# missing fails, never skips silently.
test: export CI = true
test: lint
	CI= $(GO) test -short -count=1 ./...
	$(GO) test -race -count=1 -timeout 60m ./...

demo: setup-demo build
	@./scripts/demo.sh

demo-down:
	@$(GO) run ./testenv/cmd/testenv down --state .dsub-testenv/demo

# Side-by-side benchmarks against peer tools (installs them from Debian via
# setup.sh: parallel, pssh, pdsh, clustershell). Figures: docs/BENCHMARKS.md.
bench:
	@DSUB_BENCH=1 ./scripts/setup.sh
	$(GO) run ./bench/fanout -n 32 -rounds 5
	$(GO) run ./bench/run -rounds 3
	$(GO) run ./bench/engine -hosts 1000 -slots 10 -jobs 1000000

# The README's screenshots, taken by the browser tests themselves.
screenshots: setup
	$(GO) test -count=1 -run 'TestMonitorLive' ./cmd/dsub -args -screenshots $(CURDIR)/docs/img

FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
