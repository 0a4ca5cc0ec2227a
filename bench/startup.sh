#!/usr/bin/env bash
# Start-up benchmark (`make bench-startup`): time from `node app/server.ts` to the first
# `GET /ready` = 200, cold and warm, on the embedded PostgreSQL and on DATABASE_URL, and the time
# from SIGTERM to exit. Needs curl; BENCH_DATABASE_URL (default: the local PostgreSQL) must let
# the benchmark create and drop a database.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
export PGOPTIONS="-c client_min_messages=warning"
admin_url=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
port=18765
scratch=$(mktemp -d /tmp/bulk-io-bench-startup.XXXXXX)
chmod 755 "$scratch"
trap 'node db/cli.ts stop >/dev/null 2>&1 || true; rm -rf "$scratch"' EXIT
export EMBEDDED_DATABASE_DIR="$scratch/postgres" IMPORT_DIR="$scratch/imports" EXPORT_DIR="$scratch/exports"
export HTTP_PORT=$port LOG_LEVEL=warn

now_ms() { date +%s%3N; }

# run LABEL [ENV=VALUE ...]: start the service, wait for /ready, stop it with SIGTERM.
run() {
  local label=$1; shift
  local started ready stopped pid
  started=$(now_ms)
  env "$@" node app/server.ts >"$scratch/$label.log" 2>&1 &
  pid=$!
  until curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { echo "$label: the service exited; log:"; cat "$scratch/$label.log"; exit 1; }
    sleep 0.02
  done
  ready=$(now_ms)
  kill -TERM "$pid"
  wait "$pid"
  stopped=$(now_ms)
  printf '%-34s ready after %6d ms   SIGTERM to exit %5d ms\n' "$label" $((ready - started)) $((stopped - ready))
}

database=bulkio_bench_startup_$$
psql -q "$admin_url" -c "drop database if exists $database" -c "create database $database"
external_url=$(node -e "const u = new URL(process.argv[1]); u.pathname = '/$database'; console.log(u.href)" "$admin_url")

run "embedded, cold (initdb + migrate)"
run "embedded, warm"
run "external, cold (migrate)" DATABASE_URL="$external_url"
run "external, warm" DATABASE_URL="$external_url"
psql -q "$admin_url" -c "drop database $database"
