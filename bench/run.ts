/**
 * The benchmarks' command line, run by the Makefile (and by bench/import.sh, bench/export.sh):
 *
 *   node bench/run.ts import    one import scenario: RESOURCE (users) FORMAT (csv), beside COPY and pgloader
 *   node bench/run.ts export    streams of users and articles in every format, beside COPY
 *   node bench/run.ts all       every scenario (`make bench`), one table, and the results as JSON
 *   node bench/run.ts compare [BASE NEW]   two results files, scenario by scenario
 *
 * Settings come from the environment, as make passes them: ROWS (1000000), RUNS (3),
 * BENCH_DATABASE_URL (the local PostgreSQL; it must allow creating and dropping a database),
 * BENCH_PORT, DEFECT_RATE (0), BATCH_SIZE (5000), WARM_UP (1000 rows; 0: none), PGLOADER (auto: when installed; 0 or 1),
 * STORAGE (fs; or s3: the imports keep their uploads in a bucket of OpenStack Swift, started for the
 * benchmark) or STORAGES (fs,s3: both, alternating in each run, the s3 rate as a share of the fs one),
 * BENCH_OUT (the JSON file; `all` writes .data/bench/bench-<UTC time>.json without it).
 * docs/benchmarks.md says what each figure means.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { benchExport, type ExportSettings } from './export-bench.ts'
import type { Format, Resource } from './generate.ts'
import { commandExists, Database, fail, log, runMain, runProcess, scratchDirectory } from './harness.ts'
import { type BenchContext, benchImport, type ImportSettings } from './import-bench.ts'
import { storages as allStorages, BenchObjectStore, type Storage } from './object-store.ts'
import {
  type BenchReport,
  compareReports,
  defaultReportFile,
  displayPath,
  newestReports,
  readReport,
  reportHeader,
  type ScenarioResult,
  summaryLegend,
  summaryTable,
} from './report.ts'

const usage = `usage: node bench/run.ts import|export|all|compare [BASE NEW]
  import   RESOURCE=users|articles|comments FORMAT=csv|ndjson|json ROWS RUNS DEFECT_RATE BATCH_SIZE WARM_UP PGLOADER
           STORAGE=fs|s3 or STORAGES=fs,s3
  export   ROWS RUNS (users and articles; RESOURCES, FORMATS narrow it)
  all      ROWS RUNS BENCH_OUT: every scenario, one table, the results as JSON
  compare  BASE=file NEW=file (default: the two newest files of .data/bench/)`

const resources: readonly Resource[] = ['users', 'articles', 'comments']
const formats: readonly Format[] = ['csv', 'ndjson', 'json']

function setting(name: string, fallback: string): string {
  const value = process.env[name]?.trim()
  return value ? value : fallback
}

function integerSetting(name: string, fallback: number, minimum: number): number {
  const text = setting(name, String(fallback))
  const value = Number(text.replaceAll('_', ''))
  if (!Number.isInteger(value) || value < minimum)
    fail(`${name} must be an integer of at least ${minimum}, got "${text}"`)
  return value
}

function choice<T extends string>(name: string, fallback: T, allowed: readonly T[]): T {
  const value = setting(name, fallback) as T
  if (!allowed.includes(value)) fail(`${name} must be one of ${allowed.join(', ')}, got "${value}"`)
  return value
}

function list<T extends string>(name: string, fallback: readonly T[], allowed: readonly T[]): T[] {
  const values = setting(name, fallback.join(',')).split(/[\s,]+/) as T[]
  for (const value of values)
    if (!allowed.includes(value)) fail(`${name}: "${value}" is not one of ${allowed.join(', ')}`)
  return values
}

interface Common {
  rows: number
  runs: number
  adminUrl: string
  port: number
}

function common(defaultPort: number): Common {
  return {
    rows: integerSetting('ROWS', 1_000_000, 1),
    runs: integerSetting('RUNS', 3, 1),
    adminUrl: setting('BENCH_DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/postgres'),
    port: integerSetting('BENCH_PORT', defaultPort, 1),
  }
}

/** PGLOADER: auto (default) runs it when installed, 1 requires it, 0 leaves it out. */
async function pgloaderWanted(): Promise<boolean> {
  const wanted = choice('PGLOADER', 'auto', ['auto', '0', '1'])
  if (wanted === '0') return false
  if (await commandExists('pgloader')) return true
  if (wanted === '1') fail('PGLOADER=1 but pgloader is not installed (apt-get install pgloader)')
  log('note: pgloader is not installed (apt-get install pgloader): its comparison is left out')
  return false
}

async function pgloaderVersion(scratch: string): Promise<string | null> {
  if (!(await commandExists('pgloader'))) return null
  // Its root directory (logs) is created even for --version: ours, not /tmp/pgloader.
  const { stdout } = await runProcess('pgloader', ['--root-dir', path.join(scratch, 'pgloader'), '--version'])
  return /version "([^"]+)"/.exec(stdout)?.[1] ?? (stdout.split('\n')[0] ?? '').trim()
}

/**
 * Where the imports keep their uploads: STORAGES (a list, each run imports on each in turn), else
 * STORAGE (one), else fs. The service's own STORAGE is set for every run, whatever make passes on.
 */
function storageSetting(): Storage[] {
  const several = setting('STORAGES', '')
  const chosen = several ? list('STORAGES', ['fs'], allStorages) : [choice('STORAGE', 'fs', allStorages)]
  return [...new Set(chosen)]
}

function importSettings(
  base: Common,
  resource: Resource,
  format: Format,
  pgloader: boolean,
  storages: readonly Storage[],
): ImportSettings {
  const defectRate = Number(setting('DEFECT_RATE', '0'))
  if (!(defectRate >= 0 && defectRate <= 0.5)) fail(`DEFECT_RATE must be a number from 0 to 0.5, got "${defectRate}"`)
  return {
    resource,
    format,
    rows: base.rows,
    runs: base.runs,
    defectRate,
    batchSize: integerSetting('BATCH_SIZE', 5000, 1),
    warmUpRows: integerSetting('WARM_UP', 1000, 0),
    pgloader: pgloader && format === 'csv',
    storages,
  }
}

function printSummary(results: readonly ScenarioResult[], base: Common, storages: readonly Storage[]): void {
  log('')
  log(`summary: ROWS=${base.rows} RUNS=${base.runs}${storages.length > 0 ? ` STORAGES=${storages.join(',')}` : ''}`)
  log(summaryTable(results))
  log('')
  log(summaryLegend)
}

async function writeReport(file: string, report: BenchReport): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true })
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`)
  log(`results: ${displayPath(file)}`)
}

/**
 * Runs scenarios on one database and one scratch directory (and, when an import runs on s3, one
 * Swift with its bucket), then prints the table and writes the JSON.
 */
async function bench(
  label: string,
  base: Common,
  settings: Record<string, string | number>,
  scenarios: (context: BenchContext) => Promise<ScenarioResult[]>,
  out: string | undefined,
  storages: readonly Storage[] = [],
): Promise<void> {
  const scratch = await scratchDirectory(label)
  const database = await Database.create(base.adminUrl, label)
  // Same conditions for every contender: no autovacuum during the runs, a checkpoint before each.
  await database.psql(
    resources.map((table) => `alter table ${table} set (autovacuum_enabled = false, toast.autovacuum_enabled = false)`),
  )
  const postgresql = await database.value('show server_version')
  const header = reportHeader({ ...base, settings, postgresql, pgloader: await pgloaderVersion(scratch) })
  log(
    `bench ${label}: ROWS=${base.rows} RUNS=${base.runs}, commit ${header.commit.slice(0, 10)}${header.dirty ? ' (dirty)' : ''}, ` +
      `${header.machine.nproc} CPUs, PostgreSQL ${postgresql}, node ${header.node}`,
  )
  let objectStore: BenchObjectStore | undefined
  if (storages.includes('s3')) {
    log('starting OpenStack Swift (test/setup/s3-server.ts) for the s3 imports…')
    objectStore = await BenchObjectStore.start()
    log(`  Swift answers at ${objectStore.endpoint}, bucket created`)
  }
  const results = await scenarios({ database, scratch, port: base.port, objectStore })
  printSummary(results, base, storages)
  if (out) await writeReport(out, { ...header, scenarios: results })
}

const commands: Record<string, (args: string[]) => Promise<void>> = {
  async import() {
    const base = common(18766)
    const storages = storageSetting()
    const settings = importSettings(
      base,
      choice('RESOURCE', 'users', resources),
      choice('FORMAT', 'csv', formats),
      await pgloaderWanted(),
      storages,
    )
    await bench(
      'import',
      base,
      {
        batch_size: settings.batchSize,
        defect_rate: settings.defectRate,
        warm_up_rows: settings.warmUpRows,
        storages: storages.join(','),
      },
      (context) => benchImport(context, settings),
      process.env.BENCH_OUT || undefined,
      storages,
    )
  },

  async export() {
    const base = common(18770)
    const settings: ExportSettings = {
      rows: base.rows,
      runs: base.runs,
      resources: list('RESOURCES', ['users', 'articles'], ['users', 'articles']),
      formats: list('FORMATS', formats, formats),
    }
    await bench('export', base, {}, (context) => benchExport(context, settings), process.env.BENCH_OUT || undefined)
  },

  async all() {
    const base = common(18766)
    const pgloader = await pgloaderWanted()
    const storages = storageSetting()
    const imports: [Resource, Format][] = [
      ['users', 'csv'],
      ['users', 'ndjson'],
      ['users', 'json'],
      ['articles', 'csv'],
      ['comments', 'csv'],
    ]
    const first = importSettings(base, 'users', 'csv', pgloader, storages)
    await bench(
      'all',
      base,
      {
        batch_size: first.batchSize,
        defect_rate: first.defectRate,
        warm_up_rows: first.warmUpRows,
        storages: storages.join(','),
      },
      async (context) => {
        const results: ScenarioResult[] = []
        for (const [resource, format] of imports) {
          results.push(...(await benchImport(context, importSettings(base, resource, format, pgloader, storages))))
        }
        const exportSettings = { rows: base.rows, runs: base.runs, resources: ['users', 'articles'] as const, formats }
        results.push(...(await benchExport(context, exportSettings)))
        return results
      },
      process.env.BENCH_OUT || defaultReportFile(),
      storages,
    )
  },

  async compare(args) {
    const given = [args[0] ?? process.env.BASE, args[1] ?? process.env.NEW].filter((file) => file)
    if (given.length === 1) fail('bench-compare needs both BASE= and NEW=, or neither (the two newest files)')
    const [baseFile, nextFile] = given.length === 2 ? (given as [string, string]) : await newestReports()
    const [baseReport, nextReport] = [await readReport(baseFile), await readReport(nextFile)]
    log(compareReports(baseFile, baseReport, nextFile, nextReport))
  },
}

const [name, ...args] = process.argv.slice(2)
const command = commands[name ?? '']
if (!command) {
  process.stderr.write(`${usage}\n`)
  process.exitCode = 2
} else {
  await runMain(() => command(args))
}
