import { randomBytes } from 'node:crypto'
import { availableParallelism, hostname } from 'node:os'
import fp from 'fastify-plugin'
import { startExportSweeper } from '../app/exports/sweeper.ts'
import type { JobThreadData } from '../app/jobs/job-thread.ts'
import type { ThreadMetric } from '../app/jobs/job-thread-client.ts'
import { JobThreads } from '../app/jobs/job-threads.ts'
import { jobMetrics } from '../app/jobs/metrics.ts'
import { JobRunner } from '../app/jobs/runner.ts'

/**
 * Faults a test can inject (never set from the environment): a job thread that runs an import of
 * a file of this name exits at once, as a thread that crashes on a job would.
 */
export interface JobFaults {
  exitJobThreadOnSourceFilename?: string
}

export interface Jobs {
  /** This process's identity in the jobs' lease_owner column. */
  readonly owner: string
  /** Starts claiming jobs and sweeping expired exports (app/server.ts calls it once migrations are done). */
  start(): void
  /** Jobs running in this process now. */
  readonly active: number
  /** Resolves when every job of this process has stopped (after close). */
  idle(): Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    jobs: Jobs
  }
}

/**
 * The jobs of this process (when RUN_JOBS): the claim loop (app/jobs/runner.ts) has the job threads
 * (app/jobs/job-threads.ts) run what it claims, their metric messages go to the imports' and the
 * exports' metrics, and the export sweeper (app/exports/sweeper.ts) deletes expired files. This
 * plugin wires them, decorates `app.jobs`, and closes them.
 */
export default fp(
  async (app, options: { faults?: JobFaults; threadExecArgv?: string[] }) => {
    const { config } = app
    const owner = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
    const data: JobThreadData = {
      databaseUrl: app.database.url,
      owner,
      resourceModules: app.resources.map((resource) => resource.module),
      logLevel: config.LOG_LEVEL,
      storage: app.storage.settings,
      workerPoolSize: config.WORKER_POOL_SIZE,
      importThreads: config.IMPORT_THREADS === 'auto' ? Math.max(1, availableParallelism() - 1) : config.IMPORT_THREADS,
      leaseSeconds: config.JOB_LEASE_SECONDS,
      maxRecordBytes: config.RECORD_MAX_BYTES,
      maxErrorsPerJob: config.IMPORT_MAX_ERRORS,
      connectTimeoutSeconds: config.DATABASE_CONNECT_TIMEOUT_SECONDS,
      download: {
        maxBytes: config.IMPORT_URL_MAX_BYTES,
        timeoutMs: config.IMPORT_URL_TIMEOUT_MS,
        maxRedirects: config.IMPORT_URL_MAX_REDIRECTS,
        allowPrivate: config.IMPORT_URL_ALLOW_PRIVATE,
      },
      exportTtlSeconds: config.EXPORT_TTL_SECONDS,
      exportGzipLevel: config.EXPORT_GZIP_LEVEL,
      exportEscapeFormulas: config.EXPORT_CSV_ESCAPE_FORMULAS,
      exitOnSourceFilename: options.faults?.exitJobThreadOnSourceFilename,
      execArgv: options.threadExecArgv,
    }
    const imports = app.imports.metrics
    const onMetric = (message: ThreadMetric) => {
      switch (message.type) {
        case 'records':
          return imports.records(message.resource, message.format, message.outcome, message.count)
        case 'stage':
          return imports.stage(message.resource, message.stage, message.seconds)
        case 'batch':
          return imports.batchWritten(message.resource, message.statement)
        case 'bytes':
          return imports.bytesRead(message.resource, message.format, message.bytes)
        case 'store':
          return app.storage.observe(message.operation, message.seconds, message.outcome, message.bytes)
        case 'exported': {
          const labels = { resource: message.resource, format: message.format, mode: 'async' as const }
          return app.exports.metrics.finished(labels, message.rows, message.bytes, message.seconds)
        }
      }
    }
    const runner = new JobRunner({
      sql: app.sql,
      config,
      owner,
      threads: new JobThreads(data, app.log, onMetric),
      log: app.log,
      metrics: { ...jobMetrics(app.metrics.client), importStarted: (resource) => imports.runStarted(resource) },
    })
    let stopSweeper: (() => void) | undefined

    app.decorate('jobs', {
      owner,
      get active() {
        return runner.active
      },
      start() {
        if (stopSweeper || !config.RUN_JOBS) return
        stopSweeper = startExportSweeper({
          sql: app.sql,
          store: app.storage.exports,
          importStore: app.storage.imports,
          orphanSeconds: config.STORE_ORPHAN_SECONDS,
          log: app.log,
          ttlSeconds: config.EXPORT_TTL_SECONDS,
          onExpired: (resource, fetched) => app.exports.metrics.expired(resource, fetched),
        })
        runner.start()
      },
      idle: () => runner.idle(),
    })

    app.addHook('onClose', async () => {
      stopSweeper?.()
      await runner.close()
    })
  },
  { name: 'jobs', dependencies: ['config', 'db', 'metrics', 'storage', 'imports', 'exports', 'resources'] },
)
