# servescope: an OpenTelemetry Collector distribution for LLM inference engines.
#   make run    build the collector and run it with the embedded default configuration
#   make test   build, check generated files, vet, lint, and run every test (unit, fuzz for a bounded time, e2e)
#   make deps   install what make test needs beyond Go and a C compiler (Debian's prometheus package)

GO            ?= go
BUILDER       := go.opentelemetry.io/collector/cmd/builder@v0.165.0
# The build tags are the manifest's (dist::build_tags in builder-config.yaml), the one place they are written.
BUILD_TAGS    := $(shell sed -n 's/^  build_tags: *//p' builder-config.yaml)
ifeq ($(BUILD_TAGS),)
$(error builder-config.yaml has no dist::build_tags)
endif
BIN           := bin/otelcol-servescope
# The slim sidecar distribution (builder-config-sidecar.yaml): only what the collector next to a replica runs.
SIDECAR_BIN   := bin/otelcol-servescope-sidecar
FUZZTIME      ?= 15s
# golangci-lint at the version pinned in tools/go.mod (its own module: the distribution's go.mod stays as it is).
GOLANGCI_LINT := $(GO) tool -modfile=tools/go.mod golangci-lint
# go-nvml (a later receiver) needs cgo; its headers warn under -O2 without this.
export CGO_ENABLED := 1
export CGO_CFLAGS  ?= -O2 -Wno-deprecated-declarations

.PHONY: build run test unit fuzz e2e deploy-test vet lint fmt check-tidy generate check-generated bench clean demo deps check-deps rules

build:
	$(GO) build -trimpath -tags $(BUILD_TAGS) -o $(BIN) ./cmd/otelcol-servescope
	$(GO) build -trimpath -tags $(BUILD_TAGS) -o $(SIDECAR_BIN) ./cmd/otelcol-servescope-sidecar
	$(GO) build -trimpath -o bin/servescope ./cmd/servescope

run: build
	./$(BIN)

# A simulated fleet with a scripted incident, the collector, and what it concludes, live, for about a minute.
demo: build
	$(GO) run ./cmd/servescope-demo -collector $(BIN) -config config/demo.yaml

test: check-deps build check-generated check-tidy vet lint rules unit fuzz e2e deploy-test

# What the tests need beyond Go: a real Prometheus (Debian's package), for the end-to-end tests that run
# every dashboard and alert expression through it, and promtool for the rule tests. make deps installs it
# (with sudo when not root); make test only checks that it is there, and never installs anything.
deps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { 	  command -v apt-get >/dev/null || { echo "install Prometheus 2.x (prometheus and promtool on PATH)"; exit 1; }; 	  echo "installing Debian's prometheus package (prometheus, promtool)"; 	  $$(command -v sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null || 	  { $$(command -v sudo) apt-get update >/dev/null && $$(command -v sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null; }; }

# make test installs Prometheus itself only where it can without asking for privileges: as root with apt-get
# (a fresh machine, a container, CI). Anywhere else it stops and names the command, never running sudo.
check-deps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then $(MAKE) --no-print-directory deps; else \
	  echo "make test needs Prometheus 2.x (prometheus and promtool on PATH), and they are not there."; \
	  echo "Run: make deps   (installs Debian's prometheus package with apt-get, through sudo), or install them another way."; \
	  exit 1; fi; }

# The generated alert rules are valid, and fire (or not) as their tests say.
rules:
	promtool check rules alerts/servescope-rules.yaml
	promtool test rules alerts/servescope-rules.test.yaml

vet:
	$(GO) vet ./...

# .golangci.yml says which linters run and why some findings are excluded; `make fmt` applies gofumpt. The
# build tags are the binary's, so that dependencies are type-checked as the distribution compiles them.
lint:
	$(GOLANGCI_LINT) run --build-tags $(BUILD_TAGS) ./...

fmt:
	$(GOLANGCI_LINT) fmt ./...

# go.mod and go.sum (the distribution's and the tools module's) are what go mod tidy would write.
check-tidy:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	@$(GO) -C tools mod tidy -diff || { echo "tools/go.mod/go.sum are not tidy: run go -C tools mod tidy"; exit 1; }
	@echo "go.mod and go.sum are tidy"

# Our packages with the race detector; the generated main and e2e run without it (e2e has its own target).
unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v -e /test/e2e -e /cmd/otelcol-servescope)
	$(GO) test -count=1 ./cmd/otelcol-servescope
	# The accuracy harness's long cases (a 30-minute fault, a healthy hour, the capacity sweep) are skipped under -race: run them again without.
	$(GO) test -count=1 -run 'TestRootCauseAccuracy|TestCapacityFollowsDemand' ./test/accuracy/

# Every parser of engine responses has a fuzz target; each runs for FUZZTIME. A found input is written to
# the package's testdata/fuzz/<target>/ and fails the run. A target that fails without writing one is run
# once more: Go's fuzzing coordinator (1.26) can report the -fuzztime deadline itself as a failure
# ("context deadline exceeded") on a loaded machine (go.dev/issue/75804, fixed in Go 1.27).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
	    if ! $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; then \
	      if [ -d "$$dir/testdata/fuzz/$$target" ] && [ -n "$$(git status --porcelain -- "$$dir/testdata/fuzz/$$target")" ]; then exit 1; fi; \
	      echo "fuzz $$target failed without a failing input (the Go 1.26 fuzzing coordinator's deadline race): once more"; \
	      $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	    fi; \
	  done; \
	done

e2e: build
	SERVESCOPE_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 ./test/e2e/

# deploy/ (its own Go module, for Helm's dependencies): the chart renders as its golden files, every manifest
# decodes strictly into its Kubernetes type, every embedded collector configuration validates on the binary.
deploy-test: build
	cd deploy && SERVESCOPE_BIN=$(CURDIR)/$(BIN) SERVESCOPE_SIDECAR_BIN=$(CURDIR)/$(SIDECAR_BIN) $(GO) test -count=1 ./...

# Regenerate everything generated: the collector's main from builder-config.yaml, the Go constants and
# docs/schema.md from schema/canonical.yaml, and each component's metadata package, lifecycle and leak tests,
# documentation.md and README status from its metadata.yaml (mdatagen, built from its own module in
# internal/tools/mdatagen so that its dependencies stay out of go.mod).
generate:
	$(GO) run $(BUILDER) --config builder-config.yaml --skip-get-modules --skip-compilation
	$(GO) run $(BUILDER) --config builder-config-sidecar.yaml --skip-get-modules --skip-compilation
	$(GO) run ./internal/schema/gen
	$(GO) run ./internal/dashboards/gen
	$(GO) build -C internal/tools/mdatagen -o $(CURDIR)/bin/mdatagen go.opentelemetry.io/collector/cmd/mdatagen
	@for f in receiver/*/metadata.yaml processor/*/metadata.yaml connector/*/metadata.yaml exporter/*/metadata.yaml; do ./bin/mdatagen $$f || exit 1; done

# Regenerating must be a no-op: generate into a scratch copy and compare with what is committed.
check-generated:
	@for dist in otelcol-servescope:builder-config.yaml otelcol-servescope-sidecar:builder-config-sidecar.yaml; do \
	  name=$${dist%%:*} && manifest=$${dist#*:} && tmp=$$(mktemp -d) && \
	  sed 's#output_path: ./cmd/'"$$name"'$$#output_path: '"$$tmp"'#' $$manifest > $$tmp/$$manifest && \
	  grep -q "output_path: $$tmp" $$tmp/$$manifest || { echo "$$manifest: no output_path ./cmd/$$name"; rm -rf $$tmp; exit 1; }; \
	  $(GO) run $(BUILDER) --config $$tmp/$$manifest --skip-get-modules --skip-compilation >/dev/null 2>&1 || { rm -rf $$tmp; exit 1; }; \
	  for f in components.go main.go main_others.go main_windows.go; do \
	    diff -u cmd/$$name/$$f $$tmp/$$f || { echo "cmd/$$name/$$f is stale: run make generate"; rm -rf $$tmp; exit 1; }; \
	  done; rm -rf $$tmp; \
	done && echo "generated collector sources are up to date"
	$(GO) test -count=1 -run TestGeneratedFilesAreFresh ./internal/schema/
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && $(GO) run ./internal/dashboards/gen $$tmp && \
	diff -ru dashboards $$tmp/dashboards && diff -u alerts/servescope-rules.yaml $$tmp/alerts/servescope-rules.yaml || \
	{ echo "dashboards/ or alerts/ are stale: run make generate"; exit 1; }
	$(GO) build -C internal/tools/mdatagen -o $(CURDIR)/bin/mdatagen go.opentelemetry.io/collector/cmd/mdatagen
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && cp go.mod $$tmp/ && \
	for f in receiver/*/metadata.yaml processor/*/metadata.yaml connector/*/metadata.yaml exporter/*/metadata.yaml; do \
	  dir=$$(dirname $$f) && mkdir -p $$tmp/$$dir && cp -R $$dir/. $$tmp/$$dir/ && ./bin/mdatagen $$tmp/$$f >/dev/null || exit 1; \
	  diff -ru $$dir $$tmp/$$dir || { echo "$$dir: generated from metadata.yaml is stale: run make generate"; exit 1; }; \
	done && echo "generated component metadata is up to date"

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./internal/promtext/ ./internal/enginescrape/
	$(GO) test -run '^$$' -bench . -benchmem -count 6 -benchtime 20000x ./processor/llmnormalizeprocessor/
	$(GO) test -run '^$$' -bench BenchmarkSpans -benchmem -count 6 -benchtime 2s -cpu 1 ./connector/llmrootcauseconnector/
	$(GO) test -run '^$$' -bench BenchmarkBoundedState -benchtime 1x -cpu 1 ./connector/llmrootcauseconnector/
	$(GO) test -run '^$$' -bench BenchmarkSpanPath -benchmem -count 6 -cpu 1 ./cmd/servescope-bench/
	$(GO) test -run '^$$' -bench BenchmarkInterval -benchmem -count 6 -benchtime 20x -cpu 1 ./connector/llmsignalsconnector/
	$(MAKE) build
	$(GO) run ./cmd/servescope-bench -bin $(BIN) -out bin/bench-e2e.md

clean:
	rm -rf bin
