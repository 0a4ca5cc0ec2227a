import { type ChildProcess, spawn } from 'node:child_process'
import { chmodSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { buildApp } from '../app/app.ts'
import { loadConfig } from '../plugins/config.ts'
import type { Config } from '../schemas/config.ts'
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
}

/**
 * The real app on a database of its own, ready and with its schema checked, closed after the
 * test. Requests go through `app.inject` unless the test listens.
 */
export async function buildTestApp(t: TestHost, options: TestAppOptions = {}): Promise<FastifyInstance> {
  const url = options.databaseUrl ?? (await createTestDatabase(t))
  const app = await buildApp(
    { config: testConfig(options.environment), database: { url, mode: 'external' } },
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
