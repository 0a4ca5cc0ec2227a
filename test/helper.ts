import { type ChildProcess, spawn } from 'node:child_process'
import { chmodSync, mkdtempSync, openAsBlob } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import type { FastifyBaseLogger, FastifyInstance, LightMyRequestResponse } from 'fastify'
import { pino } from 'pino'
import postgres from 'postgres'
import type { Test } from 'tap'
import { type AppOptions, buildApp } from '../app/app.ts'
import { generate } from '../bench/generate.ts'
import { loadConfig } from '../plugins/config.ts'
import type { JobFaults } from '../plugins/jobs.ts'
import type { Config } from '../schemas/config.ts'
import type { ImportJob } from '../schemas/imports.ts'
import { type ProblemCode, problemTypes, problemTypeUri } from '../schemas/problem.ts'
import { createTestDatabase } from './db.ts'

export const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))

interface TestHost {
  teardown(fn: () => unknown): void
  passing(): boolean
  comment(...message: unknown[]): void
}

/**
 * A scratch directory, left for the OS's tmp cleaning. World-readable: when tests run as root,
 * the embedded PostgreSQL runs as the `postgres` user and must reach a data directory inside.
 */
export function scratchDirectory(prefix = 'bulk-io-test-'): string {
  const directory = mkdtempSync(path.join(tmpdir(), prefix))
  chmodSync(directory, 0o755)
  return directory
}

/** The service's configuration for a test: quiet, on a free port, with scratch directories. */
export function testConfig(environment: Record<string, string> = {}): Config {
  const scratch = scratchDirectory()
  return loadConfig({
    LOG_LEVEL: 'silent',
    HOST: '127.0.0.1',
    HTTP_PORT: '0',
    IMPORT_DIR: path.join(scratch, 'imports'),
    EXPORT_DIR: path.join(scratch, 'exports'),
    ...environment,
  })
}

/** A logger whose JSON lines are kept in `lines` for assertions. */
export function capturingLogger(level = 'info'): { logger: FastifyBaseLogger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line))
      done()
    },
  })
  return { logger: pino({ level }, stream), lines }
}

export interface TestAppOptions {
  /** Environment overrides, as text, exactly as the service would read them. */
  environment?: Record<string, string>
  /** Database to use; default: a fresh migrated database of its own. */
  databaseUrl?: string
  logger?: FastifyBaseLogger
  /** Called before `ready()`, e.g. to add a fixture route that exercises a plugin. */
  beforeReady?: (app: FastifyInstance) => void | Promise<void>
  /** Faults to inject (plugins/jobs.ts). */
  faults?: JobFaults
  /** The resources to serve (AppOptions.resources); default: the service's own. */
  resources?: AppOptions['resources']
}

/**
 * The real app on a database of its own, ready and with its schema checked, closed after the
 * test. Requests go through `app.inject` unless the test listens.
 */
export async function buildTestApp(t: TestHost, options: TestAppOptions = {}): Promise<FastifyInstance> {
  const url = options.databaseUrl ?? (await createTestDatabase(t))
  const app = await buildApp(
    {
      config: testConfig(options.environment),
      database: { url, mode: 'external' },
      faults: options.faults,
      resources: options.resources,
      // Threads start without tap's module hooks (mock, processinfo): twice as fast, the same code.
      threadExecArgv: [],
    },
    options.logger,
  )
  t.teardown(() => app.close())
  await options.beforeReady?.(app)
  await app.ready()
  await app.migrations.bringUpToDate()
  return app
}

export interface ServerProcess {
  child: ChildProcess
  /** Parsed JSON log lines from stdout, as they arrive. */
  logs: Record<string, unknown>[]
  stderr(): string
  /** Resolves with the first log line that matches. */
  waitForLog(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>
  /** Resolves when the process exits. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/**
 * Runs `node app/server.ts` as a real process with only the given environment (plus PATH),
 * so nothing of the test runner's environment leaks in. Killed at teardown if still running.
 */
export function startServerProcess(t: TestHost, environment: Record<string, string>): ServerProcess {
  const child = spawn(process.execPath, [path.join(root, 'app', 'server.ts')], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', HTTP_PORT: '0', ...environment },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: Record<string, unknown>[] = []
  const waiters = new Set<() => void>()
  let stderr = ''
  let buffered = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString()
    const complete = buffered.split('\n')
    buffered = complete.pop() ?? ''
    for (const line of complete.filter(Boolean)) {
      try {
        logs.push(JSON.parse(line))
      } catch {
        logs.push({ msg: line, unparsed: true })
      }
    }
    for (const wake of waiters) wake()
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      for (const wake of waiters) wake()
      resolve({ code, signal })
    })
  })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })

  function waitForLog(match: (line: Record<string, unknown>) => boolean, timeoutMs = 60_000) {
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = () => {
        const found = logs.find(match)
        if (found) {
          finish()
          resolve(found)
        } else if (child.exitCode !== null || child.signalCode !== null) {
          finish()
          const last = JSON.stringify(logs.slice(-3))
          reject(new Error(`server exited before the expected log line; stderr: ${stderr}; last logs: ${last}`))
        }
      }
      const timer = setTimeout(() => {
        finish()
        reject(new Error(`no matching log line within ${timeoutMs} ms; got: ${JSON.stringify(logs.slice(-5))}`))
      }, timeoutMs)
      const finish = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })
  }

  return { child, logs, stderr: () => stderr, waitForLog, exited }
}

/** The address a server process logged when it started listening. */
export async function listeningAddress(server: ServerProcess): Promise<string> {
  const line = await server.waitForLog((entry) => typeof entry.address === 'string')
  return line.address as string
}

/** Uploads a users CSV file to a server process (real HTTP, multipart): the job's id. */
export async function uploadUsersFile(address: string, file: string): Promise<string> {
  const form = new FormData()
  form.set('resource', 'users')
  form.set('file', await openAsBlob(file), 'users.csv')
  const response = await fetch(`${address}/api/v1/imports`, { method: 'POST', body: form })
  if (response.status !== 202) throw new Error(`upload: ${response.status} ${await response.text()}`)
  return ((await response.json()) as { id: string }).id
}

/** An import job as a server process answers GET /api/v1/imports/{id}. */
export async function processImportJob(address: string, id: string) {
  return (await (await fetch(`${address}/api/v1/imports/${id}`)).json()) as {
    status: string
    done: boolean
    counters: { processed: number; inserted: number; updated: number; failed: number }
  }
}

/**
 * What an import of users left behind in a database: the job's counters and status, and digests
 * of the users table and of the job's error rows, to compare with an uninterrupted run's.
 */
export async function importOutcome(databaseUrl: string, jobId: string) {
  const sql = postgres(databaseUrl, { max: 1 })
  try {
    const [row] = await sql`
      select j.processed, j.inserted, j.updated, j.failed, j.status,
        (select count(*) from users)::int as users,
        -- Rows the file gave no id get a random one: compare them by their natural key instead.
        (select md5(string_agg(concat_ws('|', email, name, role, active, created_at, updated_at), ',' order by lower(email))) from users) as users_digest,
        (select md5(string_agg(concat_ws('|', record, seq, line, code, field, value), ',' order by record, seq)) from import_errors where job_id = j.id) as errors_digest
      from import_jobs j where j.id = ${jobId}`
    return row
  } finally {
    await sql.end()
  }
}

export interface UploadOptions {
  resource: string
  /** The file's bytes (a string is UTF-8 encoded). */
  file: Buffer | string
  filename?: string
  /** The file part's Content-Type. */
  contentType?: string
  format?: string
  dryRun?: boolean
  /** Extra form fields, sent as given (e.g. to test validation). */
  fields?: Record<string, string>
  headers?: Record<string, string>
}

/** A multipart/form-data body as a browser or curl would send it: the fields, then the file. */
export function multipartBody(options: Omit<UploadOptions, 'headers'>): { payload: Buffer; contentType: string } {
  const boundary = `----bulkio${Math.random().toString(16).slice(2)}`
  const fields: Record<string, string> = { resource: options.resource, ...(options.fields ?? {}) }
  if (options.format) fields.format = options.format
  if (options.dryRun !== undefined) fields.dry_run = String(options.dryRun)
  const parts: Buffer[] = []
  for (const [name, value] of Object.entries(fields)) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`))
  }
  parts.push(
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${options.filename ?? 'records.csv'}"\r\n` +
        `Content-Type: ${options.contentType ?? 'application/octet-stream'}\r\n\r\n`,
    ),
    typeof options.file === 'string' ? Buffer.from(options.file) : options.file,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  )
  return { payload: Buffer.concat(parts), contentType: `multipart/form-data; boundary=${boundary}` }
}

/** A users CSV of `count` valid rows: <prefix>1@example.com, "User 1", reader; and so on. */
export function usersCsv(count: number, options: { prefix?: string; lineEnding?: string } = {}): string {
  const { prefix = 'user', lineEnding = '\n' } = options
  const rows = ['email,name,role']
  for (let index = 1; index <= count; index++) rows.push(`${prefix}${index}@example.com,User ${index},reader`)
  return rows.join(lineEnding) + lineEnding
}

/** How many rows a query returns, or a table holds (a bare table name). */
export async function countRows(app: FastifyInstance, query: string): Promise<number> {
  const from = /^\w+$/.test(query) ? `select 1 from ${query}` : query
  const [row] = await app.sql.unsafe<{ count: number }[]>(`select count(*)::int as count from (${from}) counted`)
  return row?.count ?? -1
}

/** POST /api/v1/imports with an upload, through app.inject. */
export function uploadImport(app: FastifyInstance, options: UploadOptions) {
  const { payload, contentType } = multipartBody(options)
  return app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    payload,
    headers: { 'content-type': contentType, ...(options.headers ?? {}) },
  })
}

/** Polls GET /api/v1/imports/:id until the job is done; returns its final body. */
export async function waitForImport(app: FastifyInstance, id: string, timeoutMs = 120_000): Promise<ImportJob> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const response = await app.inject({ url: `/api/v1/imports/${id}` })
    const body = response.json<ImportJob>()
    if (body.done) return body
    if (Date.now() > deadline) throw new Error(`import ${id} not done after ${timeoutMs} ms: ${response.body}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Uploads and waits: the job's final body. The app's job runner must be started. */
export async function importAndWait(app: FastifyInstance, options: UploadOptions): Promise<ImportJob> {
  const response = await uploadImport(app, options)
  if (response.statusCode !== 202) throw new Error(`upload refused: ${response.statusCode} ${response.body}`)
  return waitForImport(app, response.json<ImportJob>().id)
}

/** Asserts the whole RFC 9457 body of an error response (and its status and media type). */
export function assertProblem(
  t: Test,
  response: LightMyRequestResponse,
  code: ProblemCode,
  detail: string,
  extensions: Record<string, unknown> = {},
): void {
  const { status, title } = problemTypes[code]
  t.equal(response.statusCode, status, `status ${status}`)
  t.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8')
  t.same(response.json(), {
    type: problemTypeUri(code),
    title,
    status,
    detail,
    instance: response.headers['x-request-id'],
    code,
    ...extensions,
  })
}

/** A generated file (bench/generate.ts) in memory: realistic records, deterministic by seed. */
export async function generated(options: Parameters<typeof generate>[0]): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of generate(options)) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/** Polls `probe` every 20 ms until it gives a value; fails after `timeoutMs`, naming `what`. */
export async function until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Uploads a file and expects 202: the created job. */
export async function startImport(
  app: FastifyInstance,
  resource: string,
  file: Buffer | string,
  filename = 'data.csv',
): Promise<ImportJob> {
  const response = await uploadImport(app, { resource, file, filename })
  if (response.statusCode !== 202) throw new Error(`upload refused: ${response.statusCode} ${response.body}`)
  return response.json<ImportJob>()
}

/** GET /api/v1/imports/:id, as the API shows it. */
export async function importJob(app: FastifyInstance, id: string): Promise<ImportJob> {
  return (await app.inject({ url: `/api/v1/imports/${id}` })).json<ImportJob>()
}

/** A connection of the test's own to a database (another client of it), closed at teardown. */
export async function outsiderConnection(t: TestHost, databaseUrl: string) {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} })
  t.teardown(() => sql.end({ timeout: 1 }))
  return sql.reserve()
}

/**
 * A started app whose users table holds <prefix>1…<prefix>N@example.com (N = `seeded`), the row of
 * <prefix><locked>@example.com locked by another client's open transaction (`other`: end it with
 * `rollback`, then `release()`), for tests of imports that meet row locks. Batches of 10 records
 * unless `batchSize` says otherwise.
 */
export async function appWithLockedUser(
  t: TestHost,
  options: { prefix: string; seeded: number; locked: number; batchSize?: number },
): Promise<{ app: FastifyInstance; other: Awaited<ReturnType<typeof outsiderConnection>> }> {
  const databaseUrl = await createTestDatabase(t)
  const app = await buildTestApp(t, { databaseUrl, environment: { BATCH_SIZE: String(options.batchSize ?? 10) } })
  app.jobs.start()
  const seeded = await startImport(app, 'users', usersCsv(options.seeded, { prefix: options.prefix }))
  await waitForImport(app, seeded.id)
  const other = await outsiderConnection(t, databaseUrl)
  await other`begin`
  await other`select * from users where email = ${`${options.prefix}${options.locked}@example.com`} for update`
  return { app, other }
}
