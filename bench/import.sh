#!/usr/bin/env bash
# Import benchmark (`make bench-import`): N generated users (CSV) imported over HTTP into an
# empty database, against PostgreSQL's own COPY of the same rows into an identical empty table,
# in the same run. Prints rows/s, the ratio to COPY, the service's peak RSS, and the latency of
# GET /api/v1/imports/:id while the import runs (autocannon).
#   ROWS=1000000 RESOURCE=users FORMAT=csv DEFECT_RATE=0 BATCH_SIZE=5000 make bench-import
# BENCH_DATABASE_URL (default: the local PostgreSQL) must allow creating and dropping a database.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
export PGOPTIONS="-c client_min_messages=warning"
rows=${ROWS:-1000000}
format=${FORMAT:-csv}
defect_rate=${DEFECT_RATE:-0}
batch_size=${BATCH_SIZE:-5000}
admin_url=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
port=${BENCH_PORT:-18766}
scratch=$(mktemp -d /tmp/bulk-io-bench-import.XXXXXX)
chmod 755 "$scratch"
database=bulkio_bench_import_$$
database_url=$(node -e "const u = new URL(process.argv[1]); u.pathname = '/$database'; console.log(u.href)" "$admin_url")
service_pid=
cleanup() {
  [ -n "$service_pid" ] && kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
  psql -q "$admin_url" -c "drop database if exists $database with (force)" || true
  rm -rf "$scratch"
}
trap cleanup EXIT
now_ms() { date +%s%3N; }

echo "generating $rows users ($format, defect rate $defect_rate)…"
file="$scratch/users.$format"
node bench/generate.ts --resource users --format "$format" --rows "$rows" --defect-rate "$defect_rate" --seed 1 --out "$file"
echo "  $(du -h "$file" | cut -f1)"

psql -q "$admin_url" -c "create database $database"
# The service runs exactly as `npm start` runs it (same V8 flags).
start_arguments=$(node -p "require('./package.json').scripts.start.split(' ').slice(1).join(' ')")
DATABASE_URL="$database_url" HTTP_PORT=$port HOST=127.0.0.1 LOG_LEVEL=warn BATCH_SIZE=$batch_size \
  IMPORT_DIR="$scratch/imports" EXPORT_DIR="$scratch/exports" node $start_arguments >"$scratch/service.log" 2>&1 &
service_pid=$!
until curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do sleep 0.1; done
# Same conditions for both contenders: no autovacuum during the runs, a checkpoint before each.
psql -q "$database_url" -c "alter table users set (autovacuum_enabled = false)" -c "checkpoint"

echo "importing over HTTP…"
started=$(now_ms)
job=$(curl -fsS -F resource=users -F "file=@$file" "http://127.0.0.1:$port/api/v1/imports")
uploaded=$(now_ms)
id=$(node -e "console.log(JSON.parse(process.argv[1]).id)" "$job")
autocannon -c 2 --overallRate 20 -d 5 --json "http://127.0.0.1:$port/api/v1/imports/$id" >"$scratch/latency.json" 2>/dev/null &
latency_pid=$!
while :; do
  status=$(curl -fsS "http://127.0.0.1:$port/api/v1/imports/$id")
  node -e "process.exit(JSON.parse(process.argv[1]).done ? 0 : 1)" "$status" && break
  sleep 0.2
done
finished=$(now_ms)
wait "$latency_pid" || true
peak_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$service_pid/status")
kill "$service_pid"; wait "$service_pid" 2>/dev/null || true; service_pid=

echo "COPY of the same rows into an identical empty table…"
psql -q "$database_url" -c "create table users_copy (like users including all) with (autovacuum_enabled = false)" -c "checkpoint"
columns=$(head -n 1 "$file")
if [ "$format" != csv ]; then echo "COPY comparison needs FORMAT=csv"; exit 1; fi
# COPY three times (emptied and checkpointed in between); the median counts.
copy_times=()
for attempt in 1 2 3; do
  psql -q "$database_url" -c "truncate users_copy" -c "checkpoint"
  copy_started=$(now_ms)
  psql -q "$database_url" -c "\\copy users_copy ($columns) from '$file' with (format csv, header true)"
  copy_times+=($(( $(now_ms) - copy_started )))
done
copy_ms=$(printf '%s\n' "${copy_times[@]}" | sort -n | sed -n 2p)
copied=$(psql -Atq "$database_url" -c "select count(*) from users_copy")
echo "  COPY runs: ${copy_times[*]} ms"

node - "$status" "$scratch/latency.json" "$rows" "$started" "$uploaded" "$finished" "$copy_ms" "$copied" "$peak_rss_kb" <<'NODE'
const [status, latencyFile, rows, started, uploaded, finished, copyMs, copied, rssKb] = process.argv.slice(2)
const job = JSON.parse(status)
const latency = JSON.parse(require('node:fs').readFileSync(latencyFile, 'utf8')).latency
const jobSeconds = (Date.parse(job.finished_at) - Date.parse(job.started_at)) / 1000
const wallSeconds = (Number(finished) - Number(started)) / 1000
const copySeconds = Number(copyMs) / 1000
const rate = (n, s) => Math.round(n / s)
const importRate = rate(job.counters.processed, wallSeconds)
const copyRate = rate(Number(copied), copySeconds)
console.log(JSON.stringify(job.counters))
console.log(`upload          ${((Number(uploaded) - Number(started)) / 1000).toFixed(2)} s`)
console.log(`import (job)    ${jobSeconds.toFixed(2)} s   ${rate(job.counters.processed, jobSeconds)} rows/s`)
console.log(`import (HTTP, upload to done) ${wallSeconds.toFixed(2)} s   ${importRate} rows/s`)
console.log(`COPY (median)   ${copySeconds.toFixed(2)} s   ${copyRate} rows/s   (${copied} rows)`)
console.log(`ratio to COPY   ${(importRate / copyRate * 100).toFixed(1)} % (upload to done)   ${(rate(job.counters.processed, jobSeconds) / copyRate * 100).toFixed(1)} % (job)`)
console.log(`peak RSS        ${Math.round(Number(rssKb) / 1024)} MB`)
console.log(`GET status while importing: p50 ${latency.p50} ms, p99 ${latency.p99} ms, max ${latency.max} ms`)
NODE
