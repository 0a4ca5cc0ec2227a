# Every target installs dependencies first when they are missing (npm ci). npm brings Node.js 24
# (the `node` package); this PATH puts it, and every other tool of node_modules, first.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
export REDOCLY_TELEMETRY := off
# Node's compile cache (TypeScript stripped and compiled once, then read back): the service, its
# threads, the tests and the benchmarks start faster, and each thread of the service stays about
# 17 MB smaller (app/server.ts). Set it to another directory, or NODE_DISABLE_COMPILE_CACHE=1.
export NODE_COMPILE_CACHE ?= $(CURDIR)/.data/compile-cache
# glibc gives each thread that allocates its own malloc arena; the service's job and validation
# threads then hold ~37 MB more (peak RSS of a 1M-row import: 247 MB with the default, 210 MB
# with 2, no slower; docs/benchmarks.md). The Dockerfile sets the same.
export MALLOC_ARENA_MAX ?= 2
export REDOCLY_SUPPRESS_UPDATE_NOTICE := true
SHELL := /bin/bash
DOCKER_UP := $(shell docker info >/dev/null 2>&1 && echo yes)

.DEFAULT_GOAL := help
.PHONY: deps runtime-deps help dev stop run build test test-long test-api test-coverage fuzz fmt lint vet check generate openapi \
	migrate-up migrate-down db-reset db-shell bench bench-import bench-export bench-compare bench-startup clean clean-all

# Two levels of install: running the service needs only the production dependencies (with the
# `node` optional dependency that brings Node.js 24), which is quick; tests and tools need all.
# npm itself may run on an older Node.js, which makes it warn (EBADENGINE) about the packages that
# need the Node.js 24 it is installing: only errors are shown.
node_modules/.installed-all: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch node_modules/.installed-runtime $@

node_modules/.installed-runtime: package.json package-lock.json
	npm ci --omit=dev --no-audit --no-fund --loglevel=error
	@touch $@

deps: node_modules/.installed-all
runtime-deps: node_modules/.installed-runtime

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

dev: deps ## Develop: the compose stack when Docker answers, else the service on the embedded PostgreSQL, reloading on change
ifeq ($(DOCKER_UP),yes)
	@echo "make dev: a Docker engine answers: the compose stack: service http://localhost:8080, Prometheus :9090, Grafana :3000"
	docker compose up --build
else
	@echo "make dev: no Docker engine: running the service on the embedded PostgreSQL (.data/postgres), reloading on change"
	node --max-semi-space-size=4 --watch-path=app --watch-path=plugins --watch-path=routes --watch-path=db --watch-path=schemas app/server.ts | pino-pretty
endif

stop: runtime-deps ## Stop the compose stack and the embedded PostgreSQL left running
ifeq ($(DOCKER_UP),yes)
	docker compose down
endif
	node db/cli.ts stop

run: runtime-deps ## Run the service in the foreground (JSON logs; embedded PostgreSQL unless DATABASE_URL is set)
	npm start

build: deps vet ## Check everything a deployment needs: types and generated files (Node runs the TypeScript sources; there is nothing to compile)
	node scripts/generated-files.ts --check

# Tests that take minutes by design (kill -9 and restarts, database faults, lock waits held for
# seconds, the differential and hostile corpora) are named *.long.test.ts: `make test` leaves them
# out to stay fast, `make test-long` runs them, and CI runs both.
LONG_TESTS = $(shell find test -name '*.long.test.ts' | sort)
# Test files run four at a time (each mostly waits on PostgreSQL and on threads starting: on 2
# cores, 4 measured 282 s, 3 370 s and 5 309 s for `make test`); Node
# caches the modules it compiles (TypeScript included) across the many processes and threads.
TAP = tap --jobs=4

test: deps vet ## Type-check, then run every test but the long ones (TEST_DATABASE_URL, else an embedded PostgreSQL)
	$(TAP) --disable-coverage --exclude='test/**/*.long.test.ts'

test-long: deps ## Run the long tests: kill -9 and restarts, database faults, lock waits, the differential and hostile corpora
	$(TAP) --jobs=2 --disable-coverage --timeout=900 $(LONG_TESTS)

test-api: deps ## Run the API suite (test/api) through the generated client and the CLI against a running service: API_URL (http://127.0.0.1:8080), API_KEY
	$(TAP) --disable-coverage test/api/*.api.ts

fuzz: deps ## Run the property-based tests with FUZZ_FACTOR (10) times CI's examples and a fresh seed (FUZZ_SEED=n reruns one)
	FUZZ_FACTOR=$${FUZZ_FACTOR:-10} $(TAP) --disable-coverage --timeout=3600 $$(find test -name '*.property.test.ts' | sort)

test-coverage: deps ## Run every test with a coverage report (text, and HTML in coverage/)
	$(TAP) --coverage-report=text --coverage-report=html

fmt: deps ## Format the code and sort imports (Biome)
	biome check --write .

lint: deps ## Lint the code (Biome) and openapi.yaml (Redocly)
	biome check .
	redocly lint openapi.yaml

vet: deps ## Type-check (tsc --noEmit)
	tsc -p .

check: lint vet ## Lint, type-check and verify that generated files are current
	node scripts/generated-files.ts --check

generate: deps ## Regenerate openapi.yaml, .env.example and the README's configuration table
	node scripts/generated-files.ts

openapi: generate ## Regenerate openapi.yaml from the TypeBox schemas (with the other generated files)

migrate-up: runtime-deps ## Apply pending migrations (DATABASE_URL, else the embedded PostgreSQL)
	node db/cli.ts up

migrate-down: runtime-deps ## Revert the newest migration
	node db/cli.ts down

db-reset: runtime-deps ## Revert every migration and apply them again: ALL DATA IS DELETED
	node db/cli.ts reset

db-shell: runtime-deps ## Open psql on the database (DATABASE_URL, else the embedded PostgreSQL)
	node db/cli.ts shell

# The benchmarks (docs/benchmarks.md): bench/run.ts runs them, with ROWS (1000000) and RUNS (3)
# from the command line or the environment; each needs a PostgreSQL that lets it create a database
# (BENCH_DATABASE_URL, default the local one), curl and psql, and pgloader for its comparison.
bench: deps ## Run every benchmark (imports beside COPY and pgloader, exports beside COPY): one table, results in .data/bench/*.json (BENCH_OUT)
	node bench/run.ts all

bench-import: deps ## Import ROWS generated RESOURCE (users) as FORMAT (csv) over HTTP beside COPY and pgloader of the same rows, on STORAGE (fs; s3: Swift) or STORAGES=fs,s3 in turns: rows/s, ratios, MB/s, peak RSS, status p99
	bash bench/import.sh

bench-export: deps ## Stream ROWS users and articles (CSV, NDJSON, JSON), each checked against COPY of the same statement: rows/s, MB/s, ratio to it and to plain COPY, peak RSS
	bash bench/export.sh

bench-compare: deps ## Compare two results of make bench per scenario (BASE=file NEW=file; default the two newest in .data/bench/)
	node bench/run.ts compare

bench-startup: runtime-deps ## Time from start to /ready 200, cold and warm, embedded and external database; and SIGTERM to exit
	bash bench/startup.sh

clean: ## Remove test and coverage output
	rm -rf .tap coverage .data/test .data/test-postgres .data/compile-cache

clean-all: clean stop ## Also remove node_modules, the embedded database's data, the import/export directories and the compose volumes
ifeq ($(DOCKER_UP),yes)
	docker compose down --volumes
endif
	rm -rf node_modules .data imports exports
