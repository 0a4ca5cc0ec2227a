/**
 * Export benchmark: ROWS generated users and ROWS articles loaded into empty tables, then
 * streamed over HTTP (GET /api/v1/exports/:resource/stream, no gzip) as CSV, NDJSON and JSON,
 * against psql's COPY of the very statement the service runs, to /dev/null, in the same run;
 * CSV also against a plain `COPY <table> TO STDOUT (FORMAT csv)` of the whole table, the
 * cheapest way PostgreSQL has to hand the table out. Each stream is first checked byte for byte
 * against that COPY's output (which also warms the cache); then the contenders alternate RUNS
 * times and the medians count. Each scenario runs on a fresh service process, so that its VmHWM
 * is its own.
 */
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { exportQuery } from '../app/exports/export-query.ts'
import { type ExportFormat, exportCopyStatement } from '../db/exports.ts'
import { defaultResources, resourceOf } from '../resources/index.ts'
import type { Format, Resource } from './generate.ts'
import {
  copyReadyCsv,
  digestOutput,
  fail,
  frameJson,
  generateFile,
  log,
  MB,
  median,
  runProcess,
  Service,
} from './harness.ts'
import type { BenchContext } from './import-bench.ts'
import { round, type ScenarioResult } from './report.ts'

export interface ExportSettings {
  rows: number
  runs: number
  resources: readonly Resource[]
  formats: readonly Format[]
}

/** The settings of the service's export transaction (app/exports/copy-export.ts): psql's COPY runs under the same. */
const copyEnv = {
  PGOPTIONS:
    '-c client_min_messages=warning -c timezone=UTC -c datestyle=ISO,YMD -c synchronize_seqscans=off -c standard_conforming_strings=on',
}

/**
 * The COPY statement the service runs for GET /api/v1/exports/<resource>/stream?format=<format>
 * (no filters, every field, EXPORT_CSV_ESCAPE_FORMULAS=false as the service runs here).
 */
function copyStatement(resource: Resource, format: ExportFormat): string {
  return exportCopyStatement(exportQuery(resourceOf(defaultResources, resource), { format }, false))
}

export async function benchExport(context: BenchContext, settings: ExportSettings): Promise<ScenarioResult[]> {
  const { database, scratch } = context
  const { rows, runs } = settings
  const directory = path.join(scratch, 'export')
  await mkdir(directory, { recursive: true })

  log(`export: generating and loading ${rows} users and ${rows} articles (csv, seed 1, COPY)…`)
  const users = path.join(directory, 'users.csv')
  const articles = path.join(directory, 'articles.csv')
  await generateFile({ resource: 'users', format: 'csv', rows }, users)
  await generateFile({ resource: 'articles', format: 'csv', rows, users: rows }, articles)
  await database.psql('truncate users, articles, comments')
  await database.copyFrom('users', users)
  // The articles' foreign key to users is checked as they load.
  await database.copyFrom('articles', await copyReadyCsv(database, 'articles', articles))
  await database.psql(['vacuum analyze users', 'vacuum analyze articles'])
  const counts = new Map<Resource, number>()
  for (const resource of settings.resources) {
    const count = await database.count(resource)
    counts.set(resource, count)
    log(`  ${resource}: ${count} rows, ${await database.value(`select pg_size_pretty(pg_table_size('${resource}'))`)}`)
  }

  const results: ScenarioResult[] = []
  for (const resource of settings.resources) {
    for (const format of settings.formats) {
      results.push(await exportScenario(context, resource, format, counts.get(resource) ?? 0, runs))
    }
  }
  return results
}

async function exportScenario(
  context: BenchContext,
  resource: Resource,
  format: Format,
  rows: number,
  runs: number,
): Promise<ScenarioResult> {
  const { database, scratch, port } = context
  const name = `${resource} ${format}`
  const statement = copyStatement(resource, format)
  const plain = format === 'csv' ? `copy ${resource} to stdout (format csv)` : null
  const copyArgs = (sql: string) => ['-X', '-Atq', database.url, '-c', sql]
  const service = await Service.start({
    databaseUrl: database.url,
    port,
    scratch,
    env: { EXPORT_CSV_ESCAPE_FORMULAS: 'false' },
  })
  try {
    const url = `${service.baseUrl}/api/v1/exports/${resource}/stream?format=${format}`
    // The check: the stream's bytes are COPY's (framed as a JSON array for json).
    const expected = await digestOutput('psql', copyArgs(statement), {
      env: copyEnv,
      transform: format === 'json' ? frameJson() : undefined,
    })
    const actual = await digestOutput('curl', ['-sS', url])
    if (actual.sha256 !== expected.sha256 || actual.bytes !== expected.bytes) {
      fail(
        `${name}: the stream (${actual.bytes} bytes, sha256 ${actual.sha256}) differs from COPY's output (${expected.bytes} bytes, sha256 ${expected.sha256})`,
      )
    }
    const bytes = expected.bytes
    const streams: number[] = []
    const copies: number[] = []
    const plains: number[] = []
    for (let run = 1; run <= runs; run++) {
      const started = performance.now()
      const outcome = await runProcess('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', url])
      streams.push((performance.now() - started) / 1000)
      if (outcome.stdout !== `200 ${bytes}`)
        fail(`${name}: the stream answered '${outcome.stdout}', expected '200 ${bytes}'`)
      copies.push((await runProcess('psql', copyArgs(statement), { env: copyEnv, stdout: 'ignore' })).seconds)
      if (plain) plains.push((await runProcess('psql', copyArgs(plain), { env: copyEnv, stdout: 'ignore' })).seconds)
    }
    const peakRss = await service.peakRssBytes()
    const warnings = await service.logText()
    if (warnings) log(`  service log (LOG_LEVEL=warn):\n${warnings}`)
    const ms = (values: number[]) => values.map((value) => Math.round(value * 1000)).join(' ')
    log(
      `  ${name}: ${(bytes / MB).toFixed(1)} MB, stream ${ms(streams)} ms, COPY ${ms(copies)} ms${plain ? `, plain COPY ${ms(plains)} ms` : ''}`,
    )
    const stream = median(streams)
    const copy = median(copies)
    const rate = rows / stream
    const result: ScenarioResult = {
      scenario: `export ${name}`,
      kind: 'export',
      resource,
      format,
      rows,
      bytes,
      runs,
      seconds: round(stream, 3),
      rows_per_second: Math.round(rate),
      mb_per_second: round(bytes / MB / stream, 2),
      copy: { seconds: round(copy, 3), rows_per_second: Math.round(rows / copy) },
      ratio_to_copy: round(copy / stream, 4),
      peak_rss_mb: Math.round(peakRss / MB),
      status_latency_ms: null,
      times_seconds: {
        stream: streams.map((value) => round(value, 3)),
        copy: copies.map((value) => round(value, 3)),
      },
    }
    if (plain) {
      const plainCopy = median(plains)
      result.plain_copy = { seconds: round(plainCopy, 3), rows_per_second: Math.round(rows / plainCopy) }
      result.ratio_to_plain_copy = round(plainCopy / stream, 4)
      result.times_seconds.plain_copy = plains.map((value) => round(value, 3))
    }
    return result
  } finally {
    await service.stop()
  }
}
