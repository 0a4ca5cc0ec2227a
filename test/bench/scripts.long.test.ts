import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { type AddressInfo, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import type { BenchReport, ScenarioResult } from '../../bench/report.ts'
import { createTestDatabase } from '../db.ts'

// The benchmarks (`make bench`, `bench-import`, `bench-export`, `bench-compare`) run end to end
// on small inputs, so that a renamed module or a changed output cannot break them unnoticed:
// each must exit 0, load every row and print (and write) its figures. Their numbers are not
// checked (speed lives in the benchmarks). pgloader must be installed (.ci/run installs it).

const root = path.dirname(path.dirname(path.dirname(fileURLToPath(import.meta.url))))
const run = promisify(execFile)

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

async function scratch(t: Test): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'bulk-io-bench-test.'))
  t.teardown(() => rm(directory, { recursive: true, force: true }))
  return directory
}

/** Runs a command of the benchmark against a database server of its own; its stdout. */
async function bench(t: Test, command: string, args: string[], environment: Record<string, string>): Promise<string> {
  const admin = await createTestDatabase(t, { empty: true })
  const { stdout } = await run(command, args, {
    cwd: root,
    env: {
      ...process.env,
      BENCH_DATABASE_URL: admin,
      BENCH_PORT: String(await freePort()),
      PGLOADER: '1', // fail, not skip, without pgloader
      ...environment,
    },
    maxBuffer: 16 * 1024 * 1024,
  })
  return stdout
}

async function readReport(file: string): Promise<BenchReport> {
  return JSON.parse(await readFile(file, 'utf8')) as BenchReport
}

function scenario(report: BenchReport, name: string): ScenarioResult {
  const found = report.scenarios.find((result) => result.scenario === name)
  if (!found) throw new Error(`no scenario ${name} in ${report.scenarios.map((result) => result.scenario).join(', ')}`)
  return found
}

/** A line of the summary table: the scenario, then its row count, then figures. */
function tableLine(name: string, rows = '2,000'): RegExp {
  return new RegExp(`^${name.replace(/[()]/g, '\\$&')}\\s+${rows}\\s+[\\d,]+\\s+[\\d,]+\\s+[\\d.]+ %`, 'm')
}

/** Figures every import scenario has, whatever its speed: all rows in, the same rows as COPY, a peak and a latency. */
function checkImport(t: Test, result: ScenarioResult, rows = 2000): void {
  t.same(result.counters, { processed: rows, inserted: rows, updated: 0, failed: 0 }, `${result.scenario}: counters`)
  t.equal(result.rows, rows)
  t.equal(result.same_rows_as_copy, true, `${result.scenario}: the table holds what COPY loads`)
  t.ok(result.rows_per_second > 0 && result.copy.rows_per_second > 0 && result.ratio_to_copy > 0, 'rates and ratio')
  t.ok(result.job && result.job.rows_per_second > 0, "the job's own rate")
  t.ok(result.mb_per_second > 0 && result.bytes > 0, 'MB/s')
  t.ok((result.peak_rss_mb ?? 0) > 0, 'peak RSS')
  t.ok(result.status_latency_ms && result.status_latency_ms.requests > 0, 'GET status answered while importing')
  t.equal(result.times_seconds.import?.length, result.runs, 'one time per run')
}

function checkPgloader(t: Test, report: BenchReport, name: string): void {
  const loader = scenario(report, `pgloader ${name}`)
  t.equal(loader.same_rows_as_copy, true, `pgloader ${name}: the rows COPY loads`)
  t.ok(loader.rows_per_second > 0 && loader.ratio_to_copy > 0, `pgloader ${name}: rate and ratio to COPY`)
  t.ok((scenario(report, `import ${name}`).ratio_to_pgloader ?? 0) > 0, `import ${name}: ratio to pgloader`)
}

t.test('bench/import.sh imports users as CSV beside COPY and pgloader and prints every figure', async (t) => {
  const out = path.join(await scratch(t), 'import.json')
  const output = await bench(t, 'bash', ['bench/import.sh'], { ROWS: '2000', RUNS: '1', BENCH_OUT: out })
  t.match(output, /counters of the last run: \{"processed":2000,"inserted":2000,"updated":0,"failed":0\}/)
  t.match(
    output,
    /run 1: import [\d.]+ s \(upload [\d.]+ s, queued [\d.]+ s, job [\d.]+ s, peak RSS \d+ MB\), COPY [\d.]+ s, pgloader [\d.]+ s/,
  )
  t.match(output, tableLine('import users csv'))
  t.match(output, tableLine('pgloader users csv'))
  const report = await readReport(out)
  t.same(
    report.scenarios.map((result) => result.scenario),
    ['import users csv', 'pgloader users csv'],
  )
  checkImport(t, scenario(report, 'import users csv'))
  checkPgloader(t, report, 'users csv')
})

t.test('bench/import.sh imports comments after their users and articles, and JSON users', async (t) => {
  const directory = await scratch(t)
  const comments = await bench(t, 'bash', ['bench/import.sh'], {
    ROWS: '2000',
    RUNS: '1',
    RESOURCE: 'comments',
    BENCH_OUT: path.join(directory, 'comments.json'),
  })
  t.match(comments, /loaded 200 referenced users and 200 articles/)
  const report = await readReport(path.join(directory, 'comments.json'))
  checkImport(t, scenario(report, 'import comments csv'))
  checkPgloader(t, report, 'comments csv')

  const json = await bench(t, 'bash', ['bench/import.sh'], {
    ROWS: '2000',
    RUNS: '2',
    FORMAT: 'json',
    BENCH_OUT: path.join(directory, 'json.json'),
  })
  t.match(json, /COPY loads users\.valid\.csv/, 'COPY loads the CSV of the same rows')
  const jsonReport = await readReport(path.join(directory, 'json.json'))
  t.same(
    jsonReport.scenarios.map((result) => result.scenario),
    ['import users json'],
    'no pgloader for JSON',
  )
  checkImport(t, scenario(jsonReport, 'import users json'))
  t.equal(scenario(jsonReport, 'import users json').times_seconds.copy?.length, 2, 'two COPY runs')
})

t.test(
  'bench/import.sh with STORAGES=fs,s3 imports on a directory and on Swift in turns, the s3 rate over the fs one',
  async (t) => {
    const out = path.join(await scratch(t), 'storages.json')
    const output = await bench(t, 'bash', ['bench/import.sh'], {
      ROWS: '2000',
      RUNS: '2',
      PGLOADER: '0',
      STORAGES: 'fs,s3',
      BENCH_OUT: out,
    })
    t.match(output, /Swift answers at http:\/\/127\.0\.0\.1:\d+, bucket created/)
    t.match(output, /run 1: import fs [\d.]+ s \(.*\), import s3 [\d.]+ s \(.*\), COPY/, 'fs first on odd runs')
    t.match(output, /run 2: import s3 [\d.]+ s \(.*\), import fs [\d.]+ s \(.*\), COPY/, 's3 first on even runs')
    t.match(
      output,
      /CPU s3: upload: service [\d.]+ s, Swift [\d.]+ s; after it, to done: service [\d.]+ s, Swift [\d.]+ s/,
    )
    t.match(output, /s3 over fs: [\d.]+ % of the rate upload to done.*; run by run [\d.]+ %, [\d.]+ %$/m)
    t.match(output, /^summary: ROWS=2000 RUNS=2 STORAGES=fs,s3$/m)
    t.match(output, tableLine('import users csv'))
    t.match(
      output,
      /^import users csv \(s3\)\s+2,000\s+.*\s[\d.]+ %\s+[\d.]+\s+\d+\s+\d+$/m,
      'the s3 line with its vs fs',
    )
    t.notMatch(output, /cannot empty/, "each s3 run's objects removed")
    const report = await readReport(out)
    t.equal(report.settings.storages, 'fs,s3')
    t.same(
      report.scenarios.map((result) => [result.scenario, result.storage]),
      [
        ['import users csv', 'fs'],
        ['import users csv (s3)', 's3'],
      ],
    )
    const fs = scenario(report, 'import users csv')
    const s3 = scenario(report, 'import users csv (s3)')
    checkImport(t, fs)
    checkImport(t, s3)
    t.equal(fs.ratio_to_fs, undefined)
    t.ok((s3.ratio_to_fs ?? 0) > 0 && (s3.job_ratio_to_fs ?? 0) > 0, 's3 over fs')
    t.equal(s3.ratio_to_fs_by_run?.length, 2, 's3 over fs, run by run')
    t.equal(fs.cpu_seconds?.upload.store, null, 'no store CPU for fs')
    t.ok((s3.cpu_seconds?.upload.store ?? -1) >= 0 && (s3.cpu_seconds?.job.store ?? -1) >= 0, "Swift's CPU")
    t.equal(s3.times_seconds.copy?.length, 2, 'COPY once per run, for both')
  },
)

t.test('bench/export.sh checks every stream against COPY and prints the table', async (t) => {
  const out = path.join(await scratch(t), 'export.json')
  const output = await bench(t, 'bash', ['bench/export.sh'], { ROWS: '2000', RUNS: '1', BENCH_OUT: out })
  const report = await readReport(out)
  for (const resource of ['users', 'articles']) {
    for (const format of ['csv', 'ndjson', 'json']) {
      const name = `export ${resource} ${format}`
      t.match(output, tableLine(name), name)
      const result = scenario(report, name)
      t.equal(result.rows, 2000)
      t.ok(result.bytes > 0 && result.rows_per_second > 0 && result.ratio_to_copy > 0, `${name}: figures`)
      t.ok((result.peak_rss_mb ?? 0) > 0, `${name}: peak RSS`)
      if (format === 'csv') t.ok((result.ratio_to_plain_copy ?? 0) > 0, `${name}: ratio to plain COPY`)
      else t.equal(result.ratio_to_plain_copy, undefined, `${name}: no plain COPY`)
    }
  }
})

t.test('make bench runs every scenario into one table and a JSON file; make bench-compare compares two', async (t) => {
  const directory = await scratch(t)
  const base = path.join(directory, 'base.json')
  const output = await bench(t, 'make', ['-s', 'bench', 'ROWS=2000', 'RUNS=1', `BENCH_OUT=${base}`], {})
  const imports = ['users csv', 'users ndjson', 'users json', 'articles csv', 'comments csv']
  const withPgloader = ['users csv', 'articles csv', 'comments csv']
  const exports = ['users csv', 'users ndjson', 'users json', 'articles csv', 'articles ndjson', 'articles json']
  const expected = [
    ...imports.flatMap((name) => [`import ${name}`, ...(withPgloader.includes(name) ? [`pgloader ${name}`] : [])]),
    ...exports.map((name) => `export ${name}`),
  ]
  for (const name of expected) t.match(output, tableLine(name), `table line of ${name}`)
  t.match(output, /^results: .*base\.json$/m)

  const report = await readReport(base)
  t.same(
    report.scenarios.map((result) => result.scenario),
    expected,
  )
  t.match(report, { benchmark: 'bulk-io', rows: 2000, runs: 1, commit: /^[0-9a-f]{40}$/, postgresql: /^\d+/ })
  t.ok(report.machine.nproc > 0 && report.machine.memory_mb > 0, 'machine')
  t.ok(Date.parse(report.date) > 0, 'date')
  for (const name of imports) checkImport(t, scenario(report, `import ${name}`))
  for (const name of withPgloader) checkPgloader(t, report, name)
  for (const name of exports) t.ok(scenario(report, `export ${name}`).rows_per_second > 0, `export ${name}`)

  // The new file: every rate doubled, one p99 halved, one scenario missing.
  const next = path.join(directory, 'next.json')
  const changed = structuredClone(report)
  for (const result of changed.scenarios) result.rows_per_second *= 2
  const latency = scenario(changed, 'import users csv').status_latency_ms
  if (latency) latency.p99 /= 2
  changed.scenarios = changed.scenarios.filter((result) => result.scenario !== 'export articles json')
  await writeFile(next, JSON.stringify(changed))
  const { stdout } = await run('make', ['-s', 'bench-compare', `BASE=${base}`, `NEW=${next}`], { cwd: root })
  t.match(stdout, /^base .*base\.json: .*ROWS=2000 RUNS=1/m)
  t.match(stdout, /^new {2}.*next\.json: /m)
  for (const name of expected.slice(0, -1)) {
    t.match(stdout, new RegExp(`^${name}\\s+[\\d,]+\\s+[\\d,]+\\s+\\+100\\.0 %`, 'm'), `${name}: rows/s doubled`)
  }
  t.match(stdout, /^import users csv\s.*\s-50\.0 %$/m, 'p99 halved')
  t.match(stdout, /^export articles json\s+[\d,]+\s+—\s+—/m, 'a scenario missing from one file')

  await t.rejects(
    run('make', ['-s', 'bench-compare', `BASE=${base}`], { cwd: root }),
    /needs both BASE= and NEW=/,
    'one file alone is refused',
  )
})
