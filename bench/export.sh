#!/usr/bin/env bash
# Export benchmark (`make bench-export`): ROWS generated users and articles streamed over HTTP
# (GET /api/v1/exports/:resource/stream, no gzip) as CSV, NDJSON and JSON, each stream checked
# byte for byte against psql's COPY of the very statement the service runs, then timed against
# it (and, for CSV, against a plain `COPY <table> TO STDOUT (FORMAT csv)`), alternating RUNS
# times. Prints rows/s, MB/s, the ratios and the service's peak RSS. bench/run.ts does the work;
# docs/benchmarks.md says what each figure means.
#   ROWS=1000000 RUNS=3 make bench-export
# BENCH_DATABASE_URL (default: the local PostgreSQL) must allow creating and dropping a database.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
exec node bench/run.ts export
