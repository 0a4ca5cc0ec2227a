import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import fp from 'fastify-plugin'
import { downloadSource } from '../app/imports/download.ts'
import { type ImportResource, importResources } from '../app/imports/resources.ts'
import { type ImportMetrics, type RunOutcome, runImport } from '../app/imports/run-import.ts'
import { inspectSource } from '../app/imports/source.ts'
import { connect } from '../db/connection.ts'
import { isDatabaseUnavailable } from '../db/errors.ts'
import { claimImportJob, finishImportJob, type ImportJobRow, recordDownloadedSource } from '../db/imports.ts'

export interface JobRunner {
  /** This process's identity in the jobs' lease_owner column. */
  readonly owner: string
  /** Starts claiming jobs (app/server.ts calls it once migrations are done). */
  start(): void
  /** Jobs running in this process now. */
  readonly active: number
  /** Resolves when every job of this process has stopped (after close). */
  idle(): Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    jobs: JobRunner
  }
}

/**
 * The job runner: claims queued jobs (and jobs whose owner's lease expired) with FOR UPDATE SKIP
 * LOCKED, runs up to WORKER_POOL_SIZE of them at once, and keeps their leases alive. New jobs wake
 * it through NOTIFY; a poll every JOB_POLL_INTERVAL_MS also finds expired leases. On close it
 * stops claiming, lets each job finish the batch in hand and hands it back to the queue.
 */
export default fp(
  async (app) => {
    const { config } = app
    const owner = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
    const client = app.metrics.client
    const recordsTotal = new client.Counter({
      name: 'bulkio_import_records_total',
      help: 'Import records processed, by resource and outcome (inserted, updated, failed).',
      labelNames: ['resource', 'outcome'],
    })
    const jobsStarted = new client.Counter({
      name: 'bulkio_import_jobs_started_total',
      help: 'Import job runs started (a resumed job counts again), by resource.',
      labelNames: ['resource'],
    })
    const jobsFinished = new client.Counter({
      name: 'bulkio_import_jobs_finished_total',
      help: 'Import jobs finished, by resource and final status (completed, failed, cancelled).',
      labelNames: ['resource', 'status'],
    })
    const jobsInProgress = new client.Gauge({
      name: 'bulkio_import_jobs_in_progress',
      help: 'Import jobs running in this process, by resource.',
      labelNames: ['resource'],
    })
    const jobDuration = new client.Histogram({
      name: 'bulkio_import_job_duration_seconds',
      help: 'Duration of import job runs in this process, by resource and outcome.',
      labelNames: ['resource', 'status'],
      buckets: [0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
    })
    const batchSeconds = new client.Histogram({
      name: 'bulkio_import_batch_seconds',
      help: 'Time per import batch by stage: parse and validate (worker threads), write (database).',
      labelNames: ['resource', 'stage'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    })
    const bytesRead = new client.Counter({
      name: 'bulkio_import_bytes_read_total',
      help: 'Bytes of import sources read (as stored: compressed when gzip), by resource.',
      labelNames: ['resource'],
    })
    const metrics: ImportMetrics = {
      records: (resource, outcome, count) => count && recordsTotal.inc({ resource, outcome }, count),
      batchStage: (resource, stage, seconds) => batchSeconds.observe({ resource, stage }, seconds),
      bytesRead: (resource, bytes) => bytesRead.inc({ resource }, bytes),
    }

    // Batches write on connections of their own: two per running job (see app/imports/batch-writer.ts),
    // so that bulk writes never wait for, nor starve, the API's pool.
    const writeConnections = connect(app.database.url, {
      max: config.WORKER_POOL_SIZE * 2 + 1,
      connectTimeoutSeconds: config.DATABASE_CONNECT_TIMEOUT_SECONDS,
      applicationName: 'bulk-io import',
    })

    const stopping = new AbortController()
    const running = new Set<Promise<void>>()
    let started = false
    let claiming = false
    let again = false
    let timer: NodeJS.Timeout | undefined
    let unlisten: (() => Promise<void>) | undefined

    /** A URL job's source, fetched into IMPORT_DIR once (a resumed job reuses the file). */
    async function download(job: ImportJobRow) {
      const fetched = await downloadSource(job.source_url as string, app.storage.importDir, `${job.id}.download`, {
        maxBytes: config.IMPORT_URL_MAX_BYTES,
        timeoutMs: config.IMPORT_URL_TIMEOUT_MS,
        maxRedirects: config.IMPORT_URL_MAX_REDIRECTS,
        allowPrivate: config.IMPORT_URL_ALLOW_PRIVATE,
      })
      const inspection = await inspectSource(fetched.path, importResources[job.resource] as ImportResource, {
        declared: job.format ?? undefined,
        filename: new URL(job.source_url as string).pathname,
        contentType: fetched.contentType,
      })
      const source = { ...fetched, format: inspection.format, warnings: inspection.warnings }
      await recordDownloadedSource(app.sql, job.id, owner, source)
      return source
    }

    async function runJob(job: ImportJobRow): Promise<void> {
      const log = app.log.child({ job_id: job.id, resource: job.resource })
      const begun = performance.now()
      jobsStarted.inc({ resource: job.resource })
      jobsInProgress.inc({ resource: job.resource })
      log.info({ attempt: job.attempts, checkpoint_record: Number(job.checkpoint_record) }, 'import started')
      let outcome: RunOutcome | 'error' = 'error'
      try {
        outcome = await runImport(job, {
          sql: app.sql,
          writeSql: writeConnections.sql,
          pool: app.pool,
          owner,
          leaseSeconds: config.JOB_LEASE_SECONDS,
          maxRecordBytes: config.RECORD_MAX_BYTES,
          maxErrorsPerJob: config.IMPORT_MAX_ERRORS,
          log: app.log,
          metrics,
          signal: stopping.signal,
          download: (job) => download(job),
        })
      } catch (error) {
        if (isDatabaseUnavailable(error)) {
          log.warn({ err: error }, 'database unavailable: the job resumes once its lease expires')
        } else {
          log.error({ err: error }, 'import failed unexpectedly')
          const problem = {
            type: 'urn:bulk-io:problem:internal-error',
            title: 'Internal server error',
            status: 500,
            detail: 'The import stopped on an unexpected error; the log has the details.',
            code: 'internal_error',
          }
          await finishImportJob(app.sql, job.id, owner, 'failed', problem).catch(() => {})
          outcome = 'failed'
        }
      } finally {
        jobsInProgress.dec({ resource: job.resource })
      }
      jobDuration.observe({ resource: job.resource, status: outcome }, (performance.now() - begun) / 1000)
      if (outcome === 'completed' || outcome === 'failed' || outcome === 'cancelled') {
        jobsFinished.inc({ resource: job.resource, status: outcome })
      }
    }

    /** Claims jobs while there is room; a wake-up during a claim round runs another round. */
    async function claim(): Promise<void> {
      if (!started || stopping.signal.aborted) return
      if (claiming) {
        again = true
        return
      }
      claiming = true
      try {
        do {
          again = false
          while (running.size < config.WORKER_POOL_SIZE && !stopping.signal.aborted) {
            const job = await claimImportJob(app.sql, owner, config.JOB_LEASE_SECONDS)
            if (!job) break
            const run = runJob(job).finally(() => {
              running.delete(run)
              void claim()
            })
            running.add(run)
          }
        } while (again && !stopping.signal.aborted)
      } catch (error) {
        app.log.warn({ err: error }, 'claiming jobs failed; retrying at the next poll')
      } finally {
        claiming = false
      }
    }

    app.decorate('jobs', {
      owner,
      get active() {
        return running.size
      },
      start() {
        if (started || !config.RUN_JOBS) return
        started = true
        timer = setInterval(() => void claim(), config.JOB_POLL_INTERVAL_MS)
        app.sql
          .listen('import_jobs', () => void claim())
          .then((subscription) => {
            unlisten = subscription.unlisten
          })
          .catch((error) => app.log.warn({ err: error }, 'LISTEN import_jobs failed; polling only'))
        void claim()
      },
      async idle() {
        await Promise.allSettled([...running])
      },
    })

    app.addHook('onClose', async () => {
      stopping.abort()
      clearInterval(timer)
      await unlisten?.().catch(() => {})
      await Promise.allSettled([...running])
      await writeConnections.close()
    })
  },
  { name: 'jobs', dependencies: ['config', 'db', 'metrics', 'pool', 'storage'] },
)
