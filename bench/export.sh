#!/usr/bin/env bash
# Export benchmark (`make bench-export`): N generated users and N articles loaded into an empty
# database, then streamed over HTTP (GET /api/v1/exports/:resource/stream, no gzip) as CSV,
# NDJSON and JSON, against psql's COPY of the very statement the service runs, to /dev/null, in
# the same run. Each stream is first checked byte for byte against that COPY's output (which also
# warms the cache); then stream and COPY alternate RUNS times and the medians count. Prints per
# resource and format the stream's rows/s and MB/s, COPY's rows/s and the ratio, then the
# service's peak RSS (MB = 2^20 bytes).
#   ROWS=1000000 RUNS=3 make bench-export
# BENCH_DATABASE_URL (default: the local PostgreSQL) must allow creating and dropping a database.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
export PGOPTIONS="-c client_min_messages=warning"
# The service's export transaction sets these two; psql's COPY runs under the same settings.
copy_pgoptions="$PGOPTIONS -c timezone=UTC -c standard_conforming_strings=on"
rows=${ROWS:-1000000}
runs=${RUNS:-3}
admin_url=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
port=${BENCH_PORT:-18770}
resources=(users articles)
formats=(csv ndjson json)
scratch=$(mktemp -d /tmp/bulk-io-bench-export.XXXXXX)
chmod 755 "$scratch"
database=bulkio_bench_export_$$
database_url=$(node -e "const u = new URL(process.argv[1]); u.pathname = '/$database'; console.log(u.href)" "$admin_url")
service_pid=
database_created=
cleanup() {
  local status=$?
  if [ -n "$service_pid" ]; then
    kill "$service_pid" 2>/dev/null || true
    wait "$service_pid" 2>/dev/null || true
  fi
  if [ -n "$database_created" ]; then
    psql -q "$admin_url" -c "drop database if exists $database with (force)" || true
  fi
  if [ "$status" -ne 0 ] && [ -s "$scratch/service.log" ]; then
    echo "service log (last 20 lines):" >&2
    tail -n 20 "$scratch/service.log" >&2
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
now_ns() { date +%s%N; }
fail() { echo "bench-export: $*" >&2; exit 1; }
to_ms() { local t out=(); for t in "$@"; do out+=($(( t / 1000000 ))); done; echo "${out[*]}"; }
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
# Bytes and SHA-256 of stdin: "<bytes> <hex>".
count_and_hash() {
  node -e "const h = require('node:crypto').createHash('sha256'); let n = 0
process.stdin.on('data', (c) => { n += c.length; h.update(c) }).on('end', () => console.log(n + ' ' + h.digest('hex')))"
}
# The COPY statement the service runs for GET /api/v1/exports/<resource>/stream?format=<format>
# (no filters, every field, EXPORT_CSV_ESCAPE_FORMULAS=false as the service runs here).
copy_statement() {
  node --input-type=module -e "
import { exportCopyStatement } from './db/exports.ts'
import { exportQuery } from './app/exports/export-query.ts'
import { defaultResources, resourceOf } from './resources/index.ts'
console.log(exportCopyStatement(exportQuery(resourceOf(defaultResources, process.argv[1]), { format: process.argv[2] }, false)))" "$1" "$2"
}
run_copy() { PGOPTIONS="$copy_pgoptions" psql -Atq "$database_url" -c "$1"; }
# COPY's row lines as the service frames a JSON export: `[`, the rows separated by `,`, `]`.
frame_json() { LC_ALL=C sed '1s/^/[\n/; $!s/$/,/; $s/$/\n]/'; }
stream_url() { echo "http://127.0.0.1:$port/api/v1/exports/$1/stream?format=$2"; }

if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then fail "port $port is in use (set BENCH_PORT)"; fi

echo "generating $rows users and $rows articles (csv, defect rate 0, seed 1)…"
node bench/generate.ts --resource users --format csv --rows "$rows" --defect-rate 0 --seed 1 --out "$scratch/users.csv"
node bench/generate.ts --resource articles --format csv --rows "$rows" --users "$rows" --defect-rate 0 --seed 1 \
  --out "$scratch/articles.csv"
echo "  users $(du -h "$scratch/users.csv" | cut -f1), articles $(du -h "$scratch/articles.csv" | cut -f1)"

psql -q "$admin_url" -c "create database $database"
database_created=yes
# The service runs exactly as `npm start` runs it (same V8 flags); it migrates the schema.
start_arguments=$(node -p "require('./package.json').scripts.start.split(' ').slice(1).join(' ')")
DATABASE_URL="$database_url" HTTP_PORT=$port HOST=127.0.0.1 LOG_LEVEL=warn EXPORT_CSV_ESCAPE_FORMULAS=false \
  IMPORT_DIR="$scratch/imports" EXPORT_DIR="$scratch/exports" node $start_arguments >"$scratch/service.log" 2>&1 &
service_pid=$!
deadline=$(( $(date +%s) + 60 ))
until curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do
  kill -0 "$service_pid" 2>/dev/null || fail "the service exited before /ready answered 200"
  [ "$(date +%s)" -lt "$deadline" ] || fail "no /ready 200 within 60 s"
  sleep 0.1
done

echo "loading (psql \\copy)…"
users_columns=$(head -n 1 "$scratch/users.csv")
articles_columns=$(head -n 1 "$scratch/articles.csv")
# A CSV tags cell is `a|b` or a JSON array literal (app/workers/fields.ts), which COPY cannot
# read into text[]: articles go through a staging table whose tags column is text.
articles_select=$(node -e "console.log(process.argv[1].split(',').map((c) => c !== 'tags' ? c : \`case
  when tags is null then '{}'::text[]
  when left(btrim(tags), 1) = '[' then array(select btrim(t) from json_array_elements_text(tags::json) with ordinality e(t, n) order by n)
  else array(select btrim(t) from unnest(string_to_array(tags, '|')) with ordinality e(t, n) order by n)
end\`).join(', '))" "$articles_columns")
psql -q -v ON_ERROR_STOP=1 "$database_url" <<SQL
\\copy users ($users_columns) from '$scratch/users.csv' with (format csv, header true)
create temp table articles_load (like articles);
alter table articles_load alter column tags drop not null, alter column tags type text;
\\copy articles_load ($articles_columns) from '$scratch/articles.csv' with (format csv, header true)
do \$\$ begin
  if exists (select from articles_load a where not exists (select from users u where u.id = a.author_id)) then
    raise exception 'articles reference user ids missing from the users file';
  end if;
end \$\$;
insert into articles ($articles_columns) select $articles_select from articles_load;
SQL
psql -q "$database_url" -c "vacuum analyze users" -c "vacuum analyze articles"
declare -A counts
for resource in "${resources[@]}"; do
  counts[$resource]=$(psql -Atq "$database_url" -c "select count(*) from $resource")
  echo "  $resource: ${counts[$resource]} rows, $(psql -Atq "$database_url" -c "select pg_size_pretty(pg_table_size('$resource'))")"
done

results="$scratch/results"
: >"$results"
for resource in "${resources[@]}"; do
  for format in "${formats[@]}"; do
    statement=$(copy_statement "$resource" "$format")
    url=$(stream_url "$resource" "$format")
    # Check: the stream's bytes are COPY's (framed as a JSON array for json).
    if [ "$format" = json ]; then
      if [ "${counts[$resource]}" -eq 0 ]; then expected=$(printf '[]\n' | count_and_hash)
      else expected=$(run_copy "$statement" | frame_json | count_and_hash); fi
    else
      expected=$(run_copy "$statement" | count_and_hash)
    fi
    actual=$(curl -sS "$url" | count_and_hash)
    [ "$actual" = "$expected" ] ||
      fail "$resource $format: the stream (bytes sha256: $actual) differs from COPY's output ($expected)"
    bytes=${expected%% *}
    stream_times=()
    copy_times=()
    for _ in $(seq "$runs"); do
      started=$(now_ns)
      outcome=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "$url") || fail "$resource $format: curl failed ($?)"
      stream_times+=($(( $(now_ns) - started )))
      [ "$outcome" = "200 $bytes" ] || fail "$resource $format: stream answered '$outcome', expected '200 $bytes'"
      started=$(now_ns)
      run_copy "$statement" >/dev/null
      copy_times+=($(( $(now_ns) - started )))
    done
    echo "$resource $format ${counts[$resource]} $bytes $(median "${stream_times[@]}") $(median "${copy_times[@]}")" >>"$results"
    echo "  $resource $format: stream $(to_ms "${stream_times[@]}") ms, COPY $(to_ms "${copy_times[@]}") ms"
  done
done
peak_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$service_pid/status")
kill "$service_pid"
wait "$service_pid" 2>/dev/null || true
service_pid=

node - "$results" "$peak_rss_kb" "$runs" <<'NODE'
const [resultsFile, rssKb, runs] = process.argv.slice(2)
const lines = require('node:fs').readFileSync(resultsFile, 'utf8').trim().split('\n')
const MB = 2 ** 20
const pad = (value, width) => String(value).padStart(width)
console.log(`median of ${runs} runs each; stream = GET …/stream without gzip, COPY = psql of the same statement to /dev/null`)
console.log(
  `${'resource'.padEnd(9)}${'format'.padEnd(7)}${pad('rows', 9)}${pad('MB', 8)}` +
    `${pad('stream s', 10)}${pad('rows/s', 10)}${pad('MB/s', 8)}${pad('COPY s', 9)}${pad('rows/s', 10)}${pad('stream/COPY', 13)}`,
)
for (const line of lines) {
  const [resource, format, rows, bytes, streamNs, copyNs] = line.split(' ')
  const streamSeconds = Number(streamNs) / 1e9
  const copySeconds = Number(copyNs) / 1e9
  const streamRate = Number(rows) / streamSeconds
  const copyRate = Number(rows) / copySeconds
  console.log(
    `${resource.padEnd(9)}${format.padEnd(7)}${pad(rows, 9)}${pad((Number(bytes) / MB).toFixed(1), 8)}` +
      `${pad(streamSeconds.toFixed(3), 10)}${pad(Math.round(streamRate), 10)}${pad((Number(bytes) / MB / streamSeconds).toFixed(1), 8)}` +
      `${pad(copySeconds.toFixed(3), 9)}${pad(Math.round(copyRate), 10)}${pad(`${((streamRate / copyRate) * 100).toFixed(1)} %`, 13)}`,
  )
}
console.log(`peak RSS of the service: ${Math.round(Number(rssKb) / 1024)} MB`)
NODE
if [ -s "$scratch/service.log" ]; then
  echo "service log (LOG_LEVEL=warn):"
  cat "$scratch/service.log"
fi
