/**
 * The benchmark's results: one record per scenario, the summary table every target prints, the
 * JSON file of `make bench` (with what it ran on), and `make bench-compare` of two such files.
 */
import { execFileSync } from 'node:child_process'
import { readdir, readFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fail, root } from './harness.ts'

export type ScenarioKind = 'import' | 'pgloader' | 'export'

export interface Timing {
  /** Median of the runs. */
  seconds: number
  rows_per_second: number
}

export interface ScenarioResult {
  /** `import users csv`, `pgloader users csv`, `export users csv`: what compare matches on. */
  scenario: string
  kind: ScenarioKind
  resource: string
  format: string
  /** Imports: where the service kept the upload (STORAGE): fs, or s3 (Swift on the same machine). */
  storage?: 'fs' | 's3'
  /** Rows per run. */
  rows: number
  /** Bytes of the imported file, or of the exported stream. */
  bytes: number
  runs: number
  /** Median seconds and rows/s: for imports upload to done, for exports the whole stream. */
  seconds: number
  rows_per_second: number
  /** bytes / 2^20 / seconds. */
  mb_per_second: number
  /** COPY of the same rows (imports, pgloader) or of the same statement (exports), median of its runs. */
  copy: Timing
  ratio_to_copy: number
  /** Exports as CSV: `COPY <table> TO STDOUT (FORMAT csv)` of the whole table. */
  plain_copy?: Timing
  ratio_to_plain_copy?: number
  /** CSV imports run with pgloader: our rate over pgloader's. */
  ratio_to_pgloader?: number
  /** An s3 import run beside fs (STORAGES=fs,s3): its rows/s over the fs import's of the same run. */
  ratio_to_fs?: number
  /** The same for the job alone (started_at → finished_at). */
  job_ratio_to_fs?: number
  /** The fs import's seconds over the s3 import's, run by run (the two ran back to back). */
  ratio_to_fs_by_run?: number[]
  /**
   * Imports: CPU seconds (user + system, medians of the runs) of the service and of the object
   * store (Swift's processes; null for fs) during the upload, and from its answer to the job done.
   */
  cpu_seconds?: {
    upload: { service: number; store: number | null }
    job: { service: number; store: number | null }
  }
  /** MB (2^20 bytes) of VmHWM; null where it is not measured (pgloader). */
  peak_rss_mb: number | null
  /** GET /api/v1/imports/:id while importing, over all runs (autocannon); null for others or no request. */
  status_latency_ms: { p50: number; p99: number; max: number; requests: number } | null
  /** Imports: the job's own started_at → finished_at; the upload alone; created_at → started_at. */
  job?: Timing & { ratio_to_copy: number; upload_seconds: number; queued_seconds: number }
  /** Imports: the job's counters of the last run. */
  counters?: { processed: number; inserted: number; updated: number; failed: number }
  /** Imports and pgloader: the table held exactly the rows COPY loads (checked on the first run). */
  same_rows_as_copy?: boolean | null
  /** Every run's seconds, by contender. */
  times_seconds: Record<string, number[]>
}

export interface BenchReport {
  benchmark: 'bulk-io'
  version: 1
  date: string
  commit: string
  /** The work tree had uncommitted changes. */
  dirty: boolean
  rows: number
  runs: number
  settings: Record<string, string | number>
  machine: { nproc: number; memory_mb: number; cpu: string; kernel: string }
  node: string
  postgresql: string
  pgloader: string | null
  scenarios: ScenarioResult[]
}

// ---------------------------------------------------------------------------------------------
// Formatting

export function round(value: number, digits = 0): number {
  const factor = 10 ** digits
  return Math.round(value * factor) / factor
}

function percent(value: number | null | undefined): string {
  return value === undefined || value === null || !Number.isFinite(value) ? '—' : `${(value * 100).toFixed(1)} %`
}

function integer(value: number | null | undefined): string {
  return value === undefined || value === null || !Number.isFinite(value) ? '—' : Math.round(value).toLocaleString('en')
}

function fixed(value: number | null | undefined, digits: number): string {
  return value === undefined || value === null || !Number.isFinite(value) ? '—' : value.toFixed(digits)
}

interface Column<T> {
  title: string
  left?: boolean
  value: (row: T) => string
}

function table<T>(columns: readonly Column<T>[], rows: readonly T[]): string {
  const cells = [
    columns.map((column) => column.title),
    ...rows.map((row) => columns.map((column) => column.value(row))),
  ]
  const widths = columns.map((_, index) => Math.max(...cells.map((line) => (line[index] ?? '').length)))
  return cells
    .map((line) =>
      line
        .map((cell, index) =>
          columns[index]?.left ? cell.padEnd(widths[index] ?? 0) : cell.padStart(widths[index] ?? 0),
        )
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}

/** The one table of `make bench` (and of each target): a line per scenario. */
export function summaryTable(results: readonly ScenarioResult[]): string {
  const columns: Column<ScenarioResult>[] = [
    { title: 'scenario', left: true, value: (row) => row.scenario },
    { title: 'rows', value: (row) => integer(row.rows) },
    { title: 'rows/s', value: (row) => integer(row.rows_per_second) },
    { title: 'COPY rows/s', value: (row) => integer(row.copy.rows_per_second) },
    { title: 'vs COPY', value: (row) => percent(row.ratio_to_copy) },
    { title: 'vs plain COPY', value: (row) => percent(row.ratio_to_plain_copy) },
    { title: 'vs pgloader', value: (row) => percent(row.ratio_to_pgloader) },
    // Only when storages were compared (STORAGES=fs,s3): the table of every other run stays as it was.
    ...(results.some((row) => row.ratio_to_fs !== undefined)
      ? [{ title: 'vs fs', value: (row: ScenarioResult) => percent(row.ratio_to_fs) }]
      : []),
    { title: 'MB/s', value: (row) => fixed(row.mb_per_second, 1) },
    { title: 'peak RSS MB', value: (row) => integer(row.peak_rss_mb) },
    { title: 'status p99 ms', value: (row) => fixed(row.status_latency_ms?.p99, 0) },
  ]
  return table(columns, results)
}

export const summaryLegend = `rows/s: median of the runs; imports from the upload's start to the job's done event, exports the whole stream.
vs COPY: our rows/s over psql \\copy's of the very same rows into the same empty table (imports, pgloader),
  or over psql's COPY of the very statement the stream runs, to /dev/null (exports); both medians of the same run.
vs plain COPY: CSV exports over \`COPY <table> TO STDOUT (FORMAT csv)\` of the whole table.
vs pgloader: CSV imports over pgloader loading the same CSV into the same empty table.
(s3): the import with STORAGE=s3, its upload kept in a bucket of OpenStack Swift on the same machine
  (STORAGE or STORAGES=fs,s3); without it, STORAGE=fs (a directory). vs fs: the s3 import's rows/s over
  the fs import's, the two alternating in the same run.
MB/s: the imported file's or the exported stream's bytes (MB = 2^20) per second.
peak RSS: VmHWM of the service process; imports: the highest of the runs, each on a fresh process;
  exports: one fresh process per scenario, after all its runs.
status p99: latency of GET /api/v1/imports/:id while the import runs (autocannon, 20 requests/s, all runs).
What each does: ours validates every record, reports each failure and upserts on the natural key (imports),
  frames and streams over HTTP (exports); COPY: no validation beyond the table's constraints (one bad row
  fails the whole load), no upsert; pgloader: parses the CSV itself, COPY in batches, no upsert, rows the
  table refuses go to a reject file, no per-record validation report.`

// ---------------------------------------------------------------------------------------------
// The JSON file

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return ''
  }
}

export function reportHeader(options: {
  rows: number
  runs: number
  settings: Record<string, string | number>
  postgresql: string
  pgloader: string | null
}): Omit<BenchReport, 'scenarios'> {
  return {
    benchmark: 'bulk-io',
    version: 1,
    date: new Date().toISOString(),
    commit: git(['rev-parse', 'HEAD']) || 'unknown',
    dirty: git(['status', '--porcelain', '--untracked-files=no']) !== '',
    rows: options.rows,
    runs: options.runs,
    settings: options.settings,
    machine: {
      nproc: os.availableParallelism(),
      memory_mb: Math.round(os.totalmem() / 2 ** 20),
      cpu: os.cpus()[0]?.model ?? 'unknown',
      kernel: `${os.type()} ${os.release()}`,
    },
    node: process.version,
    postgresql: options.postgresql,
    pgloader: options.pgloader,
  }
}

/** `.data/bench/bench-20261207T112945Z.json`: names sort by date. */
export function defaultReportFile(date = new Date()): string {
  const stamp = date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')
  return path.join(root, '.data', 'bench', `bench-${stamp}.json`)
}

export async function readReport(file: string): Promise<BenchReport> {
  let report: BenchReport
  try {
    report = JSON.parse(await readFile(file, 'utf8')) as BenchReport
  } catch (error) {
    fail(`cannot read ${file}: ${(error as Error).message}`)
  }
  if (report.benchmark !== 'bulk-io' || !Array.isArray(report.scenarios))
    fail(`${file} is not a results file of make bench`)
  return report
}

/** The two newest results files of .data/bench/ (by name, which is by date): [older, newer]. */
export async function newestReports(): Promise<[string, string]> {
  const directory = path.join(root, '.data', 'bench')
  const names = (await readdir(directory).catch(() => [] as string[]))
    .filter((name) => /^bench-.*\.json$/.test(name))
    .sort()
  const [base, next] = names.slice(-2)
  if (!base || !next) fail(`bench-compare needs two results files in ${directory} (make bench), or BASE= and NEW=`)
  return [path.join(directory, base), path.join(directory, next)]
}

// ---------------------------------------------------------------------------------------------
// Comparison

interface Metric {
  title: string
  value: (result: ScenarioResult) => number | null | undefined
  show: (value: number | null | undefined) => string
}

const metrics: Metric[] = [
  { title: 'rows/s', value: (result) => result.rows_per_second, show: integer },
  { title: 'vs COPY', value: (result) => result.ratio_to_copy, show: percent },
  { title: 'peak RSS MB', value: (result) => result.peak_rss_mb, show: integer },
  { title: 'status p99 ms', value: (result) => result.status_latency_ms?.p99, show: (value) => fixed(value, 0) },
]

/** Relative change from base to next, `+5.3 %`; `—` when either is missing or base is 0. */
export function change(base: number | null | undefined, next: number | null | undefined): string {
  if (base === null || base === undefined || next === null || next === undefined || base === 0) return '—'
  const value = (next / base - 1) * 100
  return `${value >= 0 ? '+' : ''}${value.toFixed(1)} %`
}

/** A path relative to the current directory when it is under it. */
export function displayPath(file: string): string {
  const relative = path.relative(process.cwd(), file)
  return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : path.resolve(file)
}

function describe(file: string, report: BenchReport): string {
  const commit = `${report.commit.slice(0, 10)}${report.dirty ? ' (dirty)' : ''}`
  return `${displayPath(file)}: ${report.date}, commit ${commit}, ROWS=${report.rows} RUNS=${report.runs}, ${report.machine.nproc} CPUs, ${report.machine.memory_mb} MB, PostgreSQL ${report.postgresql}`
}

export function compareReports(baseFile: string, base: BenchReport, nextFile: string, next: BenchReport): string {
  const lines = [`base ${describe(baseFile, base)}`, `new  ${describe(nextFile, next)}`]
  if (base.rows !== next.rows || base.runs !== next.runs)
    lines.push('note: ROWS or RUNS differ: the figures are not comparable one to one')
  if (base.machine.nproc !== next.machine.nproc || base.machine.cpu !== next.machine.cpu)
    lines.push('note: different machines')
  const names = [...new Set([...base.scenarios, ...next.scenarios].map((result) => result.scenario))]
  const find = (report: BenchReport, name: string) => report.scenarios.find((result) => result.scenario === name)
  type Row = { name: string; base?: ScenarioResult; next?: ScenarioResult }
  const rows: Row[] = names.map((name) => ({ name, base: find(base, name), next: find(next, name) }))
  const columns: Column<Row>[] = [{ title: 'scenario', left: true, value: (row) => row.name }]
  for (const metric of metrics) {
    const value = (result: ScenarioResult | undefined) => (result ? metric.value(result) : undefined)
    columns.push(
      { title: `${metric.title} base`, value: (row) => metric.show(value(row.base)) },
      { title: 'new', value: (row) => metric.show(value(row.next)) },
      { title: 'change', value: (row) => change(value(row.base), value(row.next)) },
    )
  }
  lines.push('', table(columns, rows))
  lines.push(
    '',
    'change: (new / base - 1) in %; for rows/s and vs COPY higher is better, for peak RSS and p99 lower is.',
  )
  return lines.join('\n')
}
