# leadlex-etl: `make demo` runs the main job against the built-in fake API,
# `make test` runs every check and test. CGO is required (DuckDB is a C++
# library), and so is the build tag duckdb_arrow (its Arrow interface).

GO      ?= go
TAGS    := duckdb_arrow
BIN     := bin/leadlex-etl
export CGO_ENABLED := 1

# staticcheck, pinned, installed into bin/tools by `make lint`.
STATICCHECK_VERSION := v0.8.2
STATICCHECK         := bin/tools/staticcheck

# Packages that start goroutines (the Parquet writer fills columns in
# parallel, the fake API serves connections, the DuckDB sink closes its file
# on a timer), run again under the race detector (-short skips the 1M-row
# call counts, which the plain run covers).
RACE_PKGS := ./internal/archive/ ./internal/budget/ ./internal/parquetio/ ./internal/extract/ ./internal/fakeapi/ ./internal/transform/ ./internal/load/

.PHONY: build test lint race bench rss demo fmt vet clean

# -buildvcs=auto: stamp the commit (leadlex-etl --version) when built in a
# git checkout, whatever GOFLAGS says.
build: ## build bin/leadlex-etl
	$(GO) build -buildvcs=auto -tags $(TAGS) -o $(BIN) ./cmd/leadlex-etl

# The JavaScript Parquet readers the tests check the lake with.
JS_DEPS := tools/js/node_modules/.package-lock.json

$(JS_DEPS): tools/js/package.json tools/js/package-lock.json
	npm ci --prefix tools/js --no-audit --no-fund

test: $(JS_DEPS) lint ## gofmt, vet, staticcheck, every test, then the race detector (what CI runs)
	$(GO) test -tags $(TAGS) -count=1 -timeout 20m ./...
	$(MAKE) race

# The CLI's progress display (mpb's goroutines, a ticker, the client's
# OnWait) and its signal handling run in the CLI processes these tests
# start: the race-built test binary.
RACE_CLI_TESTS := TestProgress|TestSummaryOfAnInterruptedRun|TestSignalDuringARefreshCommit

race:
	$(GO) test -race -short -tags $(TAGS) -count=1 -timeout 20m $(RACE_PKGS)
	$(GO) test -race -short -tags $(TAGS) -count=1 -timeout 20m -run '$(RACE_CLI_TESTS)' ./cmd/leadlex-etl/

$(STATICCHECK):
	GOBIN=$(abspath bin/tools) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: $(STATICCHECK) ## gofmt check, go vet, staticcheck
	@out=$$(gofmt -l cmd internal schemas); if [ -n "$$out" ]; then echo "not gofmt-formatted (run make fmt):"; echo "$$out"; exit 1; fi
	$(GO) vet -tags $(TAGS) ./...
	$(STATICCHECK) -tags $(TAGS) ./...

bench: build ## print speed and call-count ratios against references measured in the same run (medians of LEADLEX_BENCH_REPS runs)
	$(GO) test -tags $(TAGS) -run '^$$' -bench . -benchtime 1x -count 1 -timeout 60m ./... | tee bench.out
	@# The replay's aim (issue 11) is stated at a million contacts.
	LEADLEX_BENCH_ROWS=1000000 $(GO) test -tags $(TAGS) -run '^$$' -bench 'BenchmarkStages/replay' -benchtime 1x -count 1 -timeout 60m ./internal/pipeline/ | tee -a bench.out

rss: build ## peak memory of a full sync into DuckDB and into a lake, and of a replay, per size (the README's table)
	./scripts/rss.sh

demo: build ## fake API on a free loopback port -> sync into demo/
	./scripts/demo.sh

fmt:
	gofmt -w cmd internal schemas

vet:
	$(GO) vet -tags $(TAGS) ./...

clean:
	rm -rf bin demo bench.out tools/js/node_modules
