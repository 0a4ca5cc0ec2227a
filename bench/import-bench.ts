/**
 * Import benchmark: ROWS generated records of one resource and format imported over HTTP into an
 * empty table, against psql's `\copy` of the very same rows (as CSV) and, for CSV, pgloader of
 * the same file, into the same empty table, in the same run. The contenders alternate RUNS
 * times (import, COPY, pgloader, import, …), each after `truncate` and `checkpoint`, and the
 * medians count. Each import runs on a fresh service process, so each run's VmHWM is that
 * import's own peak (the highest is reported), after a small warm-up import (WARM_UP rows).
 *
 * STORAGES (fs, s3 or both) says where the service keeps the upload: a directory (fs), or a
 * bucket of OpenStack Swift started for the benchmark (s3, bench/object-store.ts). With both,
 * each run imports once on each, in turns (fs then s3 on odd runs, s3 then fs on even ones), so
 * that the s3 rate over the fs rate comes from the same run. The CPU time of the service and of
 * Swift is read around the upload and the job: on a small machine they share the cores.
 */
import { mkdir, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import type { Format, Resource } from './generate.ts'
import {
  copyReadyCsv,
  type Database,
  fail,
  generateFile,
  log,
  MB,
  median,
  runProcess,
  Service,
  seconds,
  tail,
} from './harness.ts'
import type { BenchObjectStore, Storage } from './object-store.ts'
import { round, type ScenarioResult } from './report.ts'

export interface ImportSettings {
  resource: Resource
  format: Format
  rows: number
  runs: number
  /** Share of defective records in the imported file; COPY and pgloader load the valid rows of the same seed. */
  defectRate: number
  /** BATCH_SIZE of the service. */
  batchSize: number
  /**
   * Records of a first, unmeasured import on each fresh service (0: none): the measured import
   * then meets a service as it runs for days (its job thread and validation threads started),
   * not one that starts its threads for this very job.
   */
  warmUpRows: number
  /** Run pgloader beside COPY (CSV only). */
  pgloader: boolean
  /** Where the service keeps uploads, one import per run on each (s3 needs BenchContext.objectStore). */
  storages: readonly Storage[]
}

export interface BenchContext {
  database: Database
  scratch: string
  port: number
  /** Swift and its bucket, when an s3 import runs. */
  objectStore?: BenchObjectStore
}

interface ImportJob {
  id: string
  status: string
  done: boolean
  created_at: string
  started_at: string | null
  finished_at: string | null
  counters: { processed: number; inserted: number; updated: number; failed: number }
  error: unknown
}

/** CPU seconds (user + system) of the service and of the object store (null: fs) over one phase. */
interface PhaseCpu {
  service: number
  store: number | null
}

interface ImportRun {
  storage: Storage
  wallSeconds: number
  uploadSeconds: number
  /** From the job's creation (the upload stored) to its start: claiming it, starting its thread. */
  queuedSeconds: number
  jobSeconds: number
  peakRssBytes: number
  /** The upload (curl's start to its answer), then from its answer to the job seen done. */
  cpu: { upload: PhaseCpu; job: PhaseCpu }
  job: ImportJob
}

/**
 * Articles and comments reference users (and articles): that many, a tenth of ROWS, are loaded
 * first with COPY (not timed), so that every foreign key of the measured rows resolves.
 */
export function referencedRows(rows: number): number {
  return Math.max(1, Math.ceil(rows / 10))
}

/** The import scenario's name: `import users csv`, `import users csv (s3)`. */
export function importScenario(resource: Resource, format: Format, storage: Storage): string {
  return `import ${resource} ${format}${storage === 'fs' ? '' : ` (${storage})`}`
}

export async function benchImport(context: BenchContext, settings: ImportSettings): Promise<ScenarioResult[]> {
  const { database, scratch } = context
  const { resource, format, rows, runs, defectRate, storages } = settings
  if (storages.length === 0) fail('no storage to import on')
  if (storages.includes('s3') && !context.objectStore) fail('an s3 import needs the object store started')
  const name = `${resource} ${format}`
  const directory = path.join(scratch, `import-${resource}-${format}`)
  await mkdir(directory, { recursive: true })
  const referenced = referencedRows(rows)
  const generated = { resource, rows, users: referenced, articles: referenced }

  log(`import ${name}: generating ${rows} rows (defect rate ${defectRate}, seed 1)…`)
  const file = path.join(directory, `${resource}.${format}`)
  const bytes = await generateFile({ ...generated, format, defectRate }, file)
  // COPY and pgloader load CSV without defects: the very same rows, when the import's are valid.
  let csv = file
  if (format !== 'csv' || defectRate > 0) {
    csv = path.join(directory, `${resource}.valid.csv`)
    await generateFile({ ...generated, format: 'csv' }, csv)
  }
  await database.psql('truncate users, articles, comments')
  if (resource !== 'users') {
    const users = path.join(directory, 'referenced-users.csv')
    await generateFile({ resource: 'users', format: 'csv', rows: referenced }, users)
    await database.copyFrom('users', users)
  }
  if (resource === 'comments') {
    const articles = path.join(directory, 'referenced-articles.csv')
    await generateFile({ resource: 'articles', format: 'csv', rows: referenced, users: referenced }, articles)
    await database.copyFrom('articles', await copyReadyCsv(database, 'articles', articles))
  }
  if (resource !== 'users') {
    await database.psql(['vacuum analyze users', 'vacuum analyze articles'])
    log(
      `  loaded ${referenced} referenced users${resource === 'comments' ? ` and ${referenced} articles` : ''} (COPY, not timed)`,
    )
  }
  const warmUpFile = path.join(directory, `warm-up.${format}`)
  if (settings.warmUpRows > 0) {
    await generateFile({ ...generated, rows: settings.warmUpRows, format, defectRate: 0 }, warmUpFile)
  }
  const copyFile = await copyReadyCsv(database, resource, csv)
  log(
    `  ${(bytes / MB).toFixed(1)} MB to import${storages.includes('s3') ? ` (storage ${storages.join(', ')}; s3: Swift at ${context.objectStore?.endpoint})` : ''}; ` +
      `COPY${settings.pgloader ? ' and pgloader load' : ' loads'} ${path.basename(copyFile)}`,
  )

  // Alone, the fs import keeps its old name in the run lines: `import 12.3 s (…)`.
  const label = (storage: Storage) => (storages.length === 1 && storage === 'fs' ? 'import' : `import ${storage}`)
  const imports = new Map<Storage, ImportRun[]>(storages.map((storage) => [storage, []]))
  const latencies = new Map<Storage, number[]>(storages.map((storage) => [storage, []]))
  const sameAsCopy = new Map<Storage, boolean | null>(storages.map((storage) => [storage, null]))
  const copies: number[] = []
  const pgloaders: number[] = []
  let pgloaderSameAsCopy: boolean | null = null
  for (let run = 1; run <= runs; run++) {
    const order = run % 2 === 1 ? storages : [...storages].reverse()
    const importDigests = new Map<Storage, string>()
    const importLines: string[] = []
    const cpuLines: string[] = []
    for (const storage of order) {
      const imported = await importOnce(context, settings, storage, file, warmUpFile, latencies.get(storage) ?? [])
      imports.get(storage)?.push(imported)
      if (run === 1 && defectRate === 0) importDigests.set(storage, await database.digest(resource))
      importLines.push(
        `${label(storage)} ${seconds(imported.wallSeconds)} (upload ${seconds(imported.uploadSeconds)}, queued ${seconds(imported.queuedSeconds)}, job ${seconds(imported.jobSeconds)}, peak RSS ${Math.round(imported.peakRssBytes / MB)} MB)`,
      )
      cpuLines.push(`    CPU ${storage}: ${cpuText(imported.cpu)}`)
    }

    await database.empty(resource)
    const copy = await database.copyFrom(resource, copyFile)
    copies.push(copy.seconds)
    const copied = await database.count(resource)
    if (copied !== rows) fail(`COPY of ${name} loaded ${copied} rows, not ${rows}`)
    const copyDigest = run === 1 ? await database.digest(resource) : null
    for (const [storage, digest] of importDigests) sameAsCopy.set(storage, digest === copyDigest)

    let pgloaderLine = ''
    if (settings.pgloader) {
      const loaded = await pgloaderOnce(context, resource, copyFile, path.join(directory, `pgloader-${run}`))
      pgloaders.push(loaded)
      const count = await database.count(resource)
      // pgloader exits 0 even when PostgreSQL refused rows (they go to its reject file).
      if (count !== rows) fail(`pgloader loaded ${count} rows of ${name}, not ${rows} (see its log above)`)
      if (run === 1) {
        pgloaderSameAsCopy = (await database.digest(resource)) === copyDigest
        if (!pgloaderSameAsCopy) fail(`pgloader loaded other values than COPY for ${name}`)
      }
      pgloaderLine = `, pgloader ${seconds(loaded)}`
    }
    log(`  run ${run}: ${importLines.join(', ')}, COPY ${seconds(copy.seconds)}${pgloaderLine}`)
    // The CPU lines matter where storages are compared; alone on fs they stay in the JSON.
    if (storages.includes('s3') || storages.length > 1) for (const line of cpuLines) log(line)
  }
  await database.empty(resource)
  await rm(directory, { recursive: true, force: true })

  const copy = median(copies)
  const copyRate = rows / copy
  const pgloaderRate = settings.pgloader ? rows / median(pgloaders) : null
  // Rounded as the results are, so that these lines and the table agree.
  const percent = (value: number) => `${(round(value, 4) * 100).toFixed(1)} %`
  const results: ScenarioResult[] = []
  for (const storage of storages) {
    const runsOf = imports.get(storage) ?? []
    const last = runsOf[runsOf.length - 1] as ImportRun
    const wall = median(runsOf.map((run) => run.wallSeconds))
    const job = median(runsOf.map((run) => run.jobSeconds))
    const rate = rows / wall
    const peakRss = Math.max(...runsOf.map((run) => run.peakRssBytes))
    const prefix = storages.length === 1 ? '' : `${storage}: `
    log(
      `  ${prefix}medians: import ${Math.round(rate)} rows/s upload to done, ${Math.round(rows / job)} rows/s the job alone; ` +
        `COPY ${Math.round(copyRate)} rows/s${pgloaderRate ? `; pgloader ${Math.round(pgloaderRate)} rows/s` : ''}`,
    )
    log(
      `  ${prefix}ratio to COPY ${percent(rate / copyRate)} (the job alone ${percent(rows / job / copyRate)})` +
        `${pgloaderRate ? `, to pgloader ${percent(rate / pgloaderRate)}` : ''}`,
    )
    log(`  ${prefix}counters of the last run: ${JSON.stringify(last.job.counters)}`)
    const same = sameAsCopy.get(storage) ?? null
    if (same !== null) {
      log(`  ${prefix}the imported rows are ${same ? 'those' : 'NOT those'} COPY loads (same values, checked on run 1)`)
    }
    const cpuMedian = (phase: 'upload' | 'job', of: 'service' | 'store') => {
      const values = runsOf.map((run) => run.cpu[phase][of])
      return values.some((value) => value === null) ? null : round(median(values as number[]), 2)
    }
    const result: ScenarioResult = {
      scenario: importScenario(resource, format, storage),
      kind: 'import',
      resource,
      format,
      storage,
      rows,
      bytes,
      runs,
      seconds: round(wall, 3),
      rows_per_second: Math.round(rate),
      mb_per_second: round(bytes / MB / wall, 2),
      copy: { seconds: round(copy, 3), rows_per_second: Math.round(copyRate) },
      ratio_to_copy: round(rate / copyRate, 4),
      peak_rss_mb: Math.round(peakRss / MB),
      status_latency_ms: latencySummary(latencies.get(storage) ?? []),
      job: {
        seconds: round(job, 3),
        rows_per_second: Math.round(rows / job),
        ratio_to_copy: round(rows / job / copyRate, 4),
        upload_seconds: round(median(runsOf.map((run) => run.uploadSeconds)), 3),
        queued_seconds: round(median(runsOf.map((run) => run.queuedSeconds)), 3),
      },
      cpu_seconds: {
        upload: { service: cpuMedian('upload', 'service') ?? 0, store: cpuMedian('upload', 'store') },
        job: { service: cpuMedian('job', 'service') ?? 0, store: cpuMedian('job', 'store') },
      },
      counters: last.job.counters,
      same_rows_as_copy: same,
      times_seconds: {
        import: runsOf.map((run) => round(run.wallSeconds, 3)),
        job: runsOf.map((run) => round(run.jobSeconds, 3)),
        upload: runsOf.map((run) => round(run.uploadSeconds, 3)),
        copy: copies.map((value) => round(value, 3)),
      },
    }
    if (pgloaderRate) {
      result.ratio_to_pgloader = round(rate / pgloaderRate, 4)
      result.times_seconds.pgloader = pgloaders.map((value) => round(value, 3))
    }
    results.push(result)
  }

  // The s3 import beside the fs one of the same runs: rates, and where its time went.
  const fs = results.find((result) => result.storage === 'fs')
  for (const result of results) {
    if (!fs || result === fs || !fs.job || !result.job) continue
    result.ratio_to_fs = round(result.rows_per_second / fs.rows_per_second, 4)
    result.job_ratio_to_fs = round(result.job.rows_per_second / fs.job.rows_per_second, 4)
    // Each run's pair (the two imports of a run ran back to back): how much the ratio moves.
    const fsTimes = fs.times_seconds.import ?? []
    result.ratio_to_fs_by_run = (result.times_seconds.import ?? []).map((time, run) =>
      round((fsTimes[run] ?? Number.NaN) / time, 4),
    )
    log(
      `  ${result.storage} over fs: ${percent(result.ratio_to_fs)} of the rate upload to done ` +
        `(${result.rows_per_second} against ${fs.rows_per_second} rows/s), the job alone ${percent(result.job_ratio_to_fs)}; ` +
        `medians: upload ${seconds(result.job.upload_seconds)} against ${seconds(fs.job.upload_seconds)}, ` +
        `job ${seconds(result.job.seconds)} against ${seconds(fs.job.seconds)}; run by run ${result.ratio_to_fs_by_run.map(percent).join(', ')}`,
    )
  }

  if (pgloaderRate) {
    const loader = median(pgloaders)
    const first = results[0] as ScenarioResult
    results.push({
      scenario: `pgloader ${name}`,
      kind: 'pgloader',
      resource,
      format,
      rows,
      bytes,
      runs,
      seconds: round(loader, 3),
      rows_per_second: Math.round(pgloaderRate),
      mb_per_second: round(bytes / MB / loader, 2),
      copy: first.copy,
      ratio_to_copy: round(pgloaderRate / copyRate, 4),
      peak_rss_mb: null,
      status_latency_ms: null,
      same_rows_as_copy: pgloaderSameAsCopy,
      times_seconds: { pgloader: first.times_seconds.pgloader ?? [], copy: first.times_seconds.copy ?? [] },
    })
  }
  return results
}

function cpuText(cpu: ImportRun['cpu']): string {
  const phase = ({ service, store }: PhaseCpu) =>
    `service ${seconds(service)}${store === null ? '' : `, Swift ${seconds(store)}`}`
  return `upload: ${phase(cpu.upload)}; after it, to done: ${phase(cpu.job)}`
}

/** One import on a fresh service: upload (curl) to done (its events), the status latency probed meanwhile. */
async function importOnce(
  context: BenchContext,
  settings: ImportSettings,
  storage: Storage,
  file: string,
  warmUpFile: string,
  latencies: number[],
): Promise<ImportRun> {
  const { database, scratch, port } = context
  const { resource, format, rows } = settings
  const store = storage === 's3' ? context.objectStore : undefined
  const bucket = store?.serviceEnvironment()
  const service = await Service.start({
    databaseUrl: database.url,
    port,
    scratch,
    // STORAGE always: one in the environment of make must not turn the fs runs into s3 ones.
    env: { BATCH_SIZE: String(settings.batchSize), STORAGE: storage, ...bucket?.env },
  })
  try {
    if (settings.warmUpRows > 0) {
      const warmUp = await finished(service, await upload(service, resource, format, warmUpFile))
      if (warmUp.status !== 'completed')
        fail(`the warm-up import ended ${warmUp.status}: ${JSON.stringify(warmUp.error)}`)
    }
    await database.empty(resource)
    const cpuBefore = { service: await service.cpuSeconds(), store: (await store?.cpuSeconds()) ?? null }
    const started = performance.now()
    const id = await upload(service, resource, format, file)
    const uploaded = performance.now()
    const cpuUploaded = { service: await service.cpuSeconds(), store: (await store?.cpuSeconds()) ?? null }
    const probe = latencyProbe(`${service.baseUrl}/api/v1/imports/${id}`, latencies)
    const job = await finished(service, id)
    const done = performance.now()
    const cpuDone = { service: await service.cpuSeconds(), store: (await store?.cpuSeconds()) ?? null }
    await probe.stop()
    const peakRssBytes = await service.peakRssBytes()
    const warnings = await service.logText()
    if (job.status !== 'completed') {
      fail(
        `import of ${resource} ${format} (${storage}) ended ${job.status}: ${JSON.stringify(job.error)}\n${warnings}`,
      )
    }
    const { processed, inserted, failed } = job.counters
    if (processed !== rows) fail(`the import processed ${processed} records, not ${rows}`)
    if (settings.defectRate === 0 && (inserted !== rows || failed !== 0)) {
      fail(`the import of valid rows inserted ${inserted} and failed ${failed}, not ${rows} and 0`)
    }
    const stored = await database.count(resource)
    if (stored !== inserted) fail(`the table holds ${stored} rows after the import, which inserted ${inserted}`)
    if (warnings) log(`  service log (LOG_LEVEL=warn):\n${warnings}`)
    const startedAt = Date.parse(job.started_at ?? '')
    const jobSeconds = (Date.parse(job.finished_at ?? '') - startedAt) / 1000
    const spent = (from: PhaseCpu, to: PhaseCpu): PhaseCpu => ({
      service: round(to.service - from.service, 2),
      store: from.store === null || to.store === null ? null : round(to.store - from.store, 2),
    })
    return {
      storage,
      wallSeconds: (done - started) / 1000,
      uploadSeconds: (uploaded - started) / 1000,
      queuedSeconds: (startedAt - Date.parse(job.created_at)) / 1000,
      jobSeconds,
      peakRssBytes,
      cpu: { upload: spent(cpuBefore, cpuUploaded), job: spent(cpuUploaded, cpuDone) },
      job,
    }
  } finally {
    await service.stop()
    // The service keeps each uploaded file (for its failed records): a copy of the input per run.
    await rm(path.join(scratch, 'imports'), { recursive: true, force: true })
    // Swift's disk stays as small as the fs runs' directory (a failure here must not hide the run's).
    if (store && bucket)
      await store.empty(bucket.prefix).catch((error) => log(`  cannot empty ${bucket.prefix}: ${error}`))
  }
}

/** Uploads a file for import (curl, multipart): the job's id. */
async function upload(service: Service, resource: Resource, format: Format, file: string): Promise<string> {
  const { stdout } = await runProcess('curl', [
    '-fsS',
    '-F',
    `resource=${resource}`,
    '-F',
    `format=${format}`,
    '-F',
    `file=@${file}`,
    `${service.baseUrl}/api/v1/imports`,
  ])
  return (JSON.parse(stdout) as { id: string }).id
}

/**
 * The import job once done: its `done` event, as the CLI follows a job (the events stream sends it
 * when the job ends, where a poll would add half its interval to every run).
 */
async function finished(service: Service, id: string): Promise<ImportJob> {
  for (;;) {
    const response = await fetch(`${service.baseUrl}/api/v1/imports/${id}/events`)
    if (!response.ok || !response.body) fail(`GET /api/v1/imports/${id}/events answered ${response.status}`)
    const decoder = new TextDecoder()
    let unread = ''
    for await (const chunk of response.body) {
      unread += decoder.decode(chunk, { stream: true })
      const done = /^event: done\ndata: (.*)\n\n/m.exec(unread)
      if (done) return JSON.parse(done[1] as string) as ImportJob
      const whole = unread.lastIndexOf('\n\n') // the events read whole are not done
      if (whole >= 0) unread = unread.slice(whole + 2)
    }
    // The stream ended without it (the service drains): follow again.
  }
}

/** pgloader of a CSV file into the (emptied) table: its wall time, its own CPU included. */
async function pgloaderOnce(context: BenchContext, table: string, file: string, directory: string): Promise<number> {
  const target = new URL(context.database.url)
  target.searchParams.set('tablename', table)
  await context.database.empty(table)
  // Its defaults otherwise: batches of 25,000 rows, two COPY threads; the table's indexes, checks
  // and foreign keys stay, as for COPY and the import.
  const result = await runProcess('pgloader', [
    '--root-dir',
    directory,
    '--logfile',
    path.join(directory, 'pgloader.log'),
    '--type',
    'csv',
    '--with',
    'csv header',
    '--with',
    `fields optionally enclosed by '"'`,
    '--with',
    'fields escaped by double-quote',
    '--with',
    `fields terminated by ','`,
    file,
    target.href,
  ])
  if (/\bERROR\b/.test(result.stdout)) log(`  pgloader (the end of its output):\n${tail(result.stdout, 30)}`)
  return result.seconds
}

// ---------------------------------------------------------------------------------------------
// Status latency

interface AutocannonTracker {
  on(event: 'response', listener: (client: unknown, status: number, bytes: number, ms: number) => void): void
  stop(): void
}
type Autocannon = (options: object, done: (error: Error | null) => void) => AutocannonTracker
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon

/**
 * GET url at 20 requests/s over 2 connections (autocannon) until stopped; each response's
 * latency (ms) joins `latencies`, which holds every run's.
 */
function latencyProbe(url: string, latencies: number[]): { stop(): Promise<void> } {
  let finish: (error: Error | null) => void = () => {}
  const finished = new Promise<void>((resolve, reject) => {
    finish = (error) => (error ? reject(error) : resolve())
  })
  const tracker = autocannon({ url, connections: 2, overallRate: 20, duration: 24 * 3600 }, (error) => finish(error))
  tracker.on('response', (_client, status, _bytes, ms) => {
    if (status === 200) latencies.push(ms)
  })
  return {
    stop: async () => {
      tracker.stop()
      await finished
    },
  }
}

function latencySummary(latencies: readonly number[]): ScenarioResult['status_latency_ms'] {
  if (latencies.length === 0) return null
  const sorted = [...latencies].sort((a, b) => a - b)
  const rank = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] ?? Number.NaN
  return {
    p50: round(rank(0.5), 1),
    p99: round(rank(0.99), 1),
    max: round(sorted[sorted.length - 1] ?? Number.NaN, 1),
    requests: sorted.length,
  }
}
