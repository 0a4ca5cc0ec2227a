/**
 * What the benchmarks (bench/run.ts) share: child processes timed by wall clock, the benchmark's
 * own database, the service started as `npm start` starts it, generated files, and the clean-up
 * that runs however the benchmark ends.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { createWriteStream, readFileSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, open, readFile, rm, stat } from 'node:fs/promises'
import { connect as connectTcp } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { type GenerateOptions, generate, type Resource } from './generate.ts'

export const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
export const MB = 2 ** 20
/** Every generated file uses this seed, so that files of different formats hold the same rows. */
export const SEED = 1
/** psql's notices (truncate cascades, drop if exists) are noise in the benchmark's output. */
const PGOPTIONS = '-c client_min_messages=warning'

/** A failure the benchmark explains in one line (no stack trace). */
export class BenchError extends Error {}

export function fail(message: string): never {
  throw new BenchError(message)
}

export function log(line: string): void {
  process.stdout.write(`${line}\n`)
}

// ---------------------------------------------------------------------------------------------
// Clean-up, also on Ctrl-C: the service stopped, the database dropped, the scratch directory removed.

const cleanups: (() => Promise<void> | void)[] = []

export function onCleanup(task: () => Promise<void> | void): void {
  cleanups.push(task)
}

async function runCleanups(): Promise<void> {
  for (let task = cleanups.pop(); task; task = cleanups.pop()) {
    try {
      await task()
    } catch (error) {
      process.stderr.write(`bench: clean-up failed: ${(error as Error).message}\n`)
    }
  }
}

/** Runs the benchmark, then the clean-ups; a BenchError prints its message, anything else its stack. */
export async function runMain(task: () => Promise<void>): Promise<void> {
  // After Ctrl-C, what fails as the clean-up pulls things away is not worth printing.
  let stopping = false
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return
    stopping = true
    void runCleanups().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    await task()
  } catch (error) {
    if (stopping) return
    process.stderr.write(`bench: ${error instanceof BenchError ? error.message : (error as Error).stack}\n`)
    process.exitCode = 1
  } finally {
    await runCleanups()
  }
}

/** A directory of this run's files (generated inputs, service logs and files, pgloader's logs), removed at the end. */
export async function scratchDirectory(label: string): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), `bulk-io-bench-${label}.`))
  await chmod(directory, 0o755)
  onCleanup(() => rm(directory, { recursive: true, force: true }))
  return directory
}

// ---------------------------------------------------------------------------------------------
// Numbers

/** The lower median: a value that was measured, as `sort -n | sed -n (n+1)/2p` picks it. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? Number.NaN
}

export function seconds(value: number): string {
  return `${value.toFixed(3)} s`
}

// ---------------------------------------------------------------------------------------------
// Child processes

export interface ProcessResult {
  stdout: string
  stderr: string
  /** Wall time from spawn to exit. */
  seconds: number
}

export interface ProcessOptions {
  env?: NodeJS.ProcessEnv
  /** 'ignore' sends stdout to /dev/null, as `> /dev/null` does. */
  stdout?: 'pipe' | 'ignore'
  input?: string
}

/** Runs a command to its end; a non-zero exit is a BenchError with the tail of its stderr. */
export async function runProcess(
  command: string,
  args: string[],
  options: ProcessOptions = {},
): Promise<ProcessResult> {
  const started = performance.now()
  const child = spawn(command, args, {
    cwd: root,
    env: { ...process.env, PGOPTIONS, ...options.env },
    stdio: [options.input === undefined ? 'ignore' : 'pipe', options.stdout ?? 'pipe', 'pipe'],
  })
  const stdout: Buffer[] = []
  const stderr: Buffer[] = []
  child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk))
  child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk))
  if (options.input !== undefined) child.stdin?.end(options.input)
  const [code, signal] = await exited(child, command)
  const result = {
    stdout: Buffer.concat(stdout).toString(),
    stderr: Buffer.concat(stderr).toString(),
    seconds: (performance.now() - started) / 1000,
  }
  if (code !== 0) {
    fail(
      `${command} ${args.slice(0, 3).join(' ')}… exited with ${code ?? signal}: ${tail(result.stderr || result.stdout, 10)}`,
    )
  }
  return result
}

async function exited(child: ChildProcess, command: string): Promise<[number | null, NodeJS.Signals | null]> {
  const error = once(child, 'error').then(([cause]) => fail(`cannot run ${command}: ${(cause as Error).message}`))
  return (await Promise.race([once(child, 'close'), error])) as [number | null, NodeJS.Signals | null]
}

export function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n')
}

/** Bytes and SHA-256 of a command's stdout, optionally transformed first. */
export async function digestOutput(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; transform?: Transform } = {},
): Promise<{ bytes: number; sha256: string }> {
  const child = spawn(command, args, {
    cwd: root,
    env: { ...process.env, PGOPTIONS, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const stderr: Buffer[] = []
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk))
  const hash = createHash('sha256')
  let bytes = 0
  const counted = (async () => {
    const source = options.transform ? child.stdout.pipe(options.transform) : child.stdout
    for await (const chunk of source) {
      bytes += (chunk as Buffer).length
      hash.update(chunk as Buffer)
    }
  })()
  const [[code, signal]] = await Promise.all([exited(child, command), counted])
  if (code !== 0) fail(`${command} exited with ${code ?? signal}: ${tail(Buffer.concat(stderr).toString(), 10)}`)
  return { bytes, sha256: hash.digest('hex') }
}

export async function commandExists(command: string): Promise<boolean> {
  const child = spawn('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' })
  const [code] = await once(child, 'close')
  return code === 0
}

/** Clock ticks per second of /proc/PID/stat (USER_HZ: 100 on every Linux Node runs on). */
const TICKS = 100

/** user + system CPU seconds of a process (all its threads) so far; undefined when it is gone. */
export async function processCpuSeconds(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined)
  if (stat === undefined) return undefined
  // After the command name in parentheses (which may hold spaces): utime and stime, fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / TICKS
}

export async function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connectTcp(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

// ---------------------------------------------------------------------------------------------
// The benchmark's database: created for the run, migrated, dropped at the end

export class Database {
  readonly name: string
  readonly url: string
  readonly adminUrl: string

  private constructor(adminUrl: string, name: string) {
    this.adminUrl = adminUrl
    this.name = name
    const url = new URL(adminUrl)
    url.pathname = `/${name}`
    this.url = url.href
  }

  /** A new empty database on the server of `adminUrl` (which must allow creating one), migrated. */
  static async create(adminUrl: string, label: string): Promise<Database> {
    const database = new Database(adminUrl, `bulkio_bench_${label}_${process.pid}`)
    await runProcess('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', adminUrl, '-c', `create database ${database.name}`])
    onCleanup(() =>
      runProcess('psql', ['-X', '-q', adminUrl, '-c', `drop database if exists ${database.name} with (force)`]).then(),
    )
    await runProcess(process.execPath, ['db/cli.ts', 'up'], { env: { DATABASE_URL: database.url, LOG_LEVEL: 'warn' } })
    return database
  }

  /** Runs the statements (or psql meta-commands) in one psql session; its unaligned output. */
  async psql(statements: string | readonly string[], env?: NodeJS.ProcessEnv): Promise<ProcessResult> {
    const commands = (typeof statements === 'string' ? [statements] : statements).flatMap((sql) => ['-c', sql])
    return runProcess('psql', ['-X', '-Atq', '-v', 'ON_ERROR_STOP=1', this.url, ...commands], { env })
  }

  async value(sql: string): Promise<string> {
    return (await this.psql(sql)).stdout.trim()
  }

  /** A script of several statements in one session (temporary tables live until its end). */
  async script(sql: string): Promise<void> {
    await runProcess('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', this.url, '-f', '-'], { input: sql })
  }

  async count(table: string): Promise<number> {
    return Number(await this.value(`select count(*) from ${table}`))
  }

  /** An order-independent digest of a table's rows (count and a sum of md5s): equal tables, equal digests. */
  async digest(table: string): Promise<string> {
    return this.value(
      `select count(*) || ' ' || coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0) from ${table} t`,
    )
  }

  /** The same starting point for every contender: the table empty and a checkpoint behind it. */
  async empty(table: string): Promise<void> {
    await this.psql([`truncate ${table} cascade`, 'checkpoint'])
  }

  /** psql's client-side `\copy` of a CSV file with a header into a table. */
  async copyFrom(table: string, file: string): Promise<ProcessResult> {
    return this.psql(`\\copy ${table} (${await csvHeader(file)}) from '${file}' with (format csv, header true)`)
  }
}

// ---------------------------------------------------------------------------------------------
// Files

/** Generates a file (bench/generate.ts, in this process); its size in bytes. */
export async function generateFile(options: GenerateOptions, file: string): Promise<number> {
  await pipeline(generate({ seed: SEED, ...options }), createWriteStream(file, { highWaterMark: MB }))
  return (await stat(file)).size
}

export async function csvHeader(file: string): Promise<string> {
  const handle = await open(file)
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(4096), 0, 4096, 0)
    const line = buffer.subarray(0, bytesRead).toString().split('\n')[0]
    return line?.trim() || fail(`${file} has no header line`)
  } finally {
    await handle.close()
  }
}

/**
 * The CSV that COPY (and pgloader) load for a resource. An articles tags cell is `a|b` or a JSON
 * array literal (app/workers/fields.ts), which neither can read into text[]: that one cell is
 * rewritten as an array literal, once, before any timing, through a staging table whose columns
 * are all text (every other cell passes through unchanged). Users and comments load as generated.
 */
export async function copyReadyCsv(database: Database, resource: Resource, file: string): Promise<string> {
  if (resource !== 'articles') return file
  const header = (await csvHeader(file)).split(',')
  const target = file.replace(/\.csv$/, '.copy.csv')
  // One line: psql reads a \copy meta-command to the end of its line.
  const tags = [
    "case when tags is null then '{}'::text[]",
    "when left(btrim(tags), 1) = '[' then array(select btrim(t) from json_array_elements_text(tags::json) with ordinality e(t, n) order by n)",
    "else array(select btrim(t) from unnest(string_to_array(tags, '|')) with ordinality e(t, n) order by n) end as tags",
  ].join(' ')
  await database.script(`
create temp table articles_load (${header.map((column) => `${column} text`).join(', ')});
\\copy articles_load from '${file}' with (format csv, header true)
\\copy (select ${header.map((column) => (column === 'tags' ? tags : column)).join(', ')} from articles_load) to '${target}' with (format csv, header true)
`)
  return target
}

// ---------------------------------------------------------------------------------------------
// The service, as `npm start` runs it

/** `npm start`'s node arguments (V8 flags and entry point), read from package.json. */
export function startArguments(): string[] {
  const { scripts } = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
    scripts: { start: string }
  }
  return scripts.start.split(' ').slice(1)
}

export class Service {
  readonly baseUrl: string
  private readonly child: ChildProcess
  private readonly logFile: string

  private constructor(child: ChildProcess, baseUrl: string, logFile: string) {
    this.child = child
    this.baseUrl = baseUrl
    this.logFile = logFile
  }

  /** Starts the service on its own port and waits for /ready 200 (60 s at most). */
  static async start(options: {
    databaseUrl: string
    port: number
    scratch: string
    env?: Record<string, string>
  }): Promise<Service> {
    const { databaseUrl, port, scratch } = options
    if (await portInUse(port)) fail(`port ${port} is in use (set BENCH_PORT)`)
    await mkdir(path.join(scratch, 'logs'), { recursive: true })
    const logFile = path.join(scratch, 'logs', `service-${Date.now()}.log`)
    const log = createWriteStream(logFile)
    await once(log, 'open')
    const child = spawn(process.execPath, startArguments(), {
      cwd: root,
      env: {
        ...process.env,
        DATABASE_URL: databaseUrl,
        HTTP_PORT: String(port),
        HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
        IMPORT_DIR: path.join(scratch, 'imports'),
        EXPORT_DIR: path.join(scratch, 'exports'),
        ...options.env,
      },
      stdio: ['ignore', log, log],
    })
    const service = new Service(child, `http://127.0.0.1:${port}`, logFile)
    onCleanup(() => service.stop())
    const deadline = Date.now() + 60_000
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        fail(`the service exited before /ready answered 200:\n${await service.logTail()}`)
      }
      if (Date.now() > deadline) fail(`no /ready 200 within 60 s:\n${await service.logTail()}`)
      const ready = await fetch(`${service.baseUrl}/ready`).then(
        (response) => response.status === 200,
        () => false,
      )
      if (ready) return service
      await sleep(100)
    }
  }

  /** user + system CPU seconds of the service process (all its threads) so far. */
  async cpuSeconds(): Promise<number> {
    return (await processCpuSeconds(this.child.pid ?? 0)) ?? fail('the service process is gone')
  }

  /** Peak resident set size of the process so far (VmHWM of /proc/PID/status), in bytes. */
  async peakRssBytes(): Promise<number> {
    const status = await readFile(`/proc/${this.child.pid}/status`, 'utf8')
    const kilobytes = /^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]
    return kilobytes ? Number(kilobytes) * 1024 : fail('no VmHWM in /proc/PID/status')
  }

  async logTail(lines = 20): Promise<string> {
    return tail(await readFile(this.logFile, 'utf8').catch(() => ''), lines)
  }

  /** The service's warnings and errors (it runs with LOG_LEVEL=warn), if it wrote any. */
  async logText(): Promise<string> {
    return (await readFile(this.logFile, 'utf8').catch(() => '')).trim()
  }

  /** SIGTERM, then SIGKILL after 30 s; idempotent. */
  async stop(): Promise<void> {
    const child = this.child
    if (child.exitCode !== null || child.signalCode !== null) return
    const closed = once(child, 'close')
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    await closed
    clearTimeout(timer)
  }

  async getJson<T>(pathname: string): Promise<T> {
    const response = await fetch(`${this.baseUrl}${pathname}`)
    if (!response.ok) fail(`GET ${pathname} answered ${response.status}: ${await response.text()}`)
    return (await response.json()) as T
  }
}

// ---------------------------------------------------------------------------------------------
// JSON export framing

/**
 * COPY's row lines as the service frames a JSON export: `[`, the rows separated by `,`, `]`
 * (what `sed '1s/^/[\n/; $!s/$/,/; $s/$/\n]/'` makes of them; no rows: `[]`).
 */
export function frameJson(): Transform {
  let started = false
  let pendingNewline = false
  const comma = Buffer.from(',\n')
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      const parts: Buffer[] = []
      if (!started) {
        parts.push(Buffer.from('[\n'))
        started = true
      }
      if (pendingNewline && chunk.length > 0) parts.push(comma)
      let end = chunk.length
      pendingNewline = end > 0 && chunk[end - 1] === 10
      if (pendingNewline) end--
      let from = 0
      for (let at = chunk.indexOf(10, from); at !== -1 && at < end; at = chunk.indexOf(10, from)) {
        parts.push(chunk.subarray(from, at), comma)
        from = at + 1
      }
      parts.push(chunk.subarray(from, end))
      done(null, Buffer.concat(parts))
    },
    flush(done) {
      done(null, Buffer.from(started ? '\n]\n' : '[]\n'))
    },
  })
}
