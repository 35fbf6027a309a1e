# leadlex-etl: `make demo` runs the main job against the built-in fake API,
# `make test` runs every test. CGO is required (DuckDB is a C++ library).

GO      ?= go
TAGS    := duckdb_arrow
BIN     := bin/leadlex-etl
export CGO_ENABLED := 1

.PHONY: build test bench demo fmt vet clean

build: ## build bin/leadlex-etl
	$(GO) build -tags $(TAGS) -o $(BIN) ./cmd/leadlex-etl

# hyparquet, the JavaScript Parquet reader the tests check the lake with.
JS_DEPS := tools/js/node_modules/.package-lock.json

$(JS_DEPS): tools/js/package.json tools/js/package-lock.json
	npm ci --prefix tools/js --no-audit --no-fund

test: $(JS_DEPS) ## run all tests (what CI runs)
	$(GO) vet -tags $(TAGS) ./...
	$(GO) test -tags $(TAGS) -count=1 -timeout 20m ./...

bench: build ## print speed and call-count ratios against references measured in the same run
	$(GO) test -tags $(TAGS) -run '^$$' -bench . -benchtime 1x -count 1 -timeout 30m ./... | tee bench.out

demo: build ## fake API on a free loopback port -> sync into demo/
	./scripts/demo.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet -tags $(TAGS) ./...

clean:
	rm -rf bin demo bench.out tools/js/node_modules
