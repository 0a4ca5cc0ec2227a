#!/usr/bin/env bash
# Import benchmark (`make bench-import`): ROWS generated records of RESOURCE (users, articles,
# comments) as FORMAT (csv, ndjson, json) imported over HTTP into an empty table, beside psql's
# \copy of the very same rows and, for CSV, pgloader of the same file, alternating RUNS times.
# Prints rows/s, the ratios to COPY and pgloader, MB/s, the service's peak RSS and the latency of
# GET /api/v1/imports/:id while the import runs. bench/run.ts does the work; docs/benchmarks.md
# says what each figure means.
#   ROWS=1000000 RUNS=3 RESOURCE=users FORMAT=csv DEFECT_RATE=0 BATCH_SIZE=5000 WARM_UP=1000 PGLOADER=auto STORAGE=fs make bench-import
# STORAGE=s3 imports with the service on a bucket of OpenStack Swift (test/setup/s3-server.ts, started
# once for the benchmark); STORAGES=fs,s3 runs both in turns and prints the s3 rate as a % of the fs one.
# BENCH_DATABASE_URL (default: the local PostgreSQL) must allow creating and dropping a database.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
exec node bench/run.ts import
