import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { availableParallelism, hostname } from 'node:os'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import fp from 'fastify-plugin'
import type { ExportOutcome } from '../app/exports/run-export.ts'
import type { RunOutcome } from '../app/imports/run-import.ts'
import type { FromJobThread, JobThreadData, ToJobThread } from '../app/jobs/job-thread.ts'
import { claimExportJob, type ExportJobRow, sweepExpiredExports } from '../db/exports.ts'
import { claimImportJob, type ImportJobRow } from '../db/imports.ts'
import { hasClaimableJob } from '../db/jobs.ts'

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
 * The job runner: claims queued jobs, imports and exports in turn (and jobs whose owner's lease
 * expired), with FOR UPDATE SKIP LOCKED, up to WORKER_POOL_SIZE at once, and has the job thread
 * (app/jobs/job-thread.ts) run them; the thread keeps their leases alive. New jobs wake it
 * through NOTIFY; a poll every JOB_POLL_INTERVAL_MS also finds expired leases. It also deletes
 * expired export files. On close it stops claiming, lets each import finish the batch in hand and
 * each export stop, and hand itself back to the queue, then ends the thread.
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
    // The jobs themselves run in a thread of their own (app/jobs/job-thread.ts), started when
    // the first job is there and ended on close; this side claims them and keeps the books.
    let thread: Worker | undefined
    let threadReady = false
    const pending = new Map<string, (outcome: RunOutcome | ExportOutcome | 'error') => void>()
    let threadClosed = Promise.withResolvers<void>()

    function startThread(): Worker {
      const closed = Promise.withResolvers<void>()
      threadClosed = closed
      const data: JobThreadData = {
        databaseUrl: app.database.url,
        owner,
        logLevel: config.LOG_LEVEL,
        importDir: app.storage.importDir,
        workerPoolSize: config.WORKER_POOL_SIZE,
        importThreads: config.IMPORT_THREADS || Math.max(1, availableParallelism() - 1),
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
        exportDir: app.storage.exportDir,
        exportTtlSeconds: config.EXPORT_TTL_SECONDS,
        exportGzipLevel: config.EXPORT_GZIP_LEVEL,
        exportEscapeFormulas: config.EXPORT_CSV_ESCAPE_FORMULAS,
      }
      const worker = new Worker(new URL('../app/jobs/job-thread.ts', import.meta.url), {
        workerData: data,
        // Its own heap limits: the thread allocates briskly (batches, query buffers), and a
        // moderate young generation keeps its collections cheap without growing the resident set.
        resourceLimits: { maxYoungGenerationSizeMb: 32, maxOldGenerationSizeMb: 256 },
      })
      worker.on('message', (message: FromJobThread) => {
        switch (message.type) {
          case 'finished':
            pending.get(message.jobId)?.(message.outcome)
            pending.delete(message.jobId)
            break
          case 'records':
            recordsTotal.inc({ resource: message.resource, outcome: message.outcome }, message.count)
            break
          case 'stage':
            batchSeconds.observe({ resource: message.resource, stage: message.stage }, message.seconds)
            break
          case 'bytes':
            bytesRead.inc({ resource: message.resource }, message.bytes)
            break
          case 'exported':
            app.exports.metrics.finished(
              { resource: message.resource, format: message.format, mode: 'async' },
              message.rows,
              message.bytes,
              message.seconds,
            )
            break
          case 'ready':
            threadReady = true
            void claim()
            break
          case 'closed':
            closed.resolve()
            break
        }
      })
      worker.on('error', (error) => app.log.error({ err: error }, 'the job thread failed'))
      // A thread that dies (a crash, its heap limit) takes its jobs with it: they end here as
      // errors, their leases run out, and the next claim starts a new thread that resumes them.
      worker.on('exit', () => {
        closed.resolve()
        if (thread === worker) {
          thread = undefined
          threadReady = false
        }
        for (const settle of pending.values()) settle('error')
        pending.clear()
      })
      return worker
    }

    const stopping = new AbortController()
    const running = new Set<Promise<void>>()
    let started = false
    let claiming = false
    let again = false
    let exportsFirst = true
    let timer: NodeJS.Timeout | undefined
    let sweepTimer: NodeJS.Timeout | undefined
    let unlisten: (() => Promise<void>) | undefined

    async function runExportJob(job: ExportJobRow): Promise<void> {
      app.log.info({ job_id: job.id, resource: job.resource, attempt: job.attempts }, 'export started')
      thread ??= startThread()
      const finished = new Promise<RunOutcome | ExportOutcome | 'error'>((resolve) => pending.set(job.id, resolve))
      thread.postMessage({ type: 'export', job } satisfies ToJobThread)
      await finished
    }

    async function runJob(job: ImportJobRow): Promise<void> {
      const log = app.log.child({ job_id: job.id, resource: job.resource })
      const begun = performance.now()
      jobsStarted.inc({ resource: job.resource })
      jobsInProgress.inc({ resource: job.resource })
      log.info({ attempt: job.attempts, checkpoint_record: Number(job.checkpoint_record) }, 'import started')
      thread ??= startThread()
      const finished = new Promise<RunOutcome | ExportOutcome | 'error'>((resolve) => pending.set(job.id, resolve))
      thread.postMessage({ type: 'run', job } satisfies ToJobThread)
      const outcome = await finished
      jobsInProgress.dec({ resource: job.resource })
      jobDuration.observe({ resource: job.resource, status: outcome }, (performance.now() - begun) / 1000)
      if (outcome === 'completed' || outcome === 'failed' || outcome === 'cancelled') {
        jobsFinished.inc({ resource: job.resource, status: outcome })
      }
    }

    /** The next job to run: imports and exports take turns, so that neither kind starves the other. */
    async function claimNext(): Promise<
      { kind: 'import'; job: ImportJobRow } | { kind: 'export'; job: ExportJobRow } | undefined
    > {
      const claimImport = async () => {
        const job = await claimImportJob(app.sql, owner, config.JOB_LEASE_SECONDS)
        return job && { kind: 'import' as const, job }
      }
      const claimExport = async () => {
        const job = await claimExportJob(app.sql, owner, config.JOB_LEASE_SECONDS)
        return job && { kind: 'export' as const, job }
      }
      exportsFirst = !exportsFirst
      return exportsFirst ? ((await claimExport()) ?? claimImport()) : ((await claimImport()) ?? claimExport())
    }

    /** Deletes the files of expired exports (any process may do it; each file is swept once). */
    async function sweepExports(): Promise<void> {
      try {
        for (const fileName of await sweepExpiredExports(app.sql)) {
          await rm(path.join(app.storage.exportDir, fileName), { force: true })
          app.log.info({ file: fileName }, 'expired export file deleted')
        }
      } catch (error) {
        app.log.warn({ err: error }, 'sweeping expired exports failed; retrying later')
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
        // The thread (tens of MB) starts with the first job there is, and claiming waits until
        // it has loaded: no claimed job (its clock running) waits for it.
        if (!thread) {
          if (await hasClaimableJob(app.sql)) thread = startThread()
          return
        }
        if (!threadReady) return
        do {
          again = false
          while (running.size < config.WORKER_POOL_SIZE && !stopping.signal.aborted) {
            const next = await claimNext()
            if (!next) break
            const run: Promise<void> = (next.kind === 'export' ? runExportJob(next.job) : runJob(next.job)).finally(
              () => {
                running.delete(run)
                void claim()
              },
            )
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
        // Expired files go within a minute (sooner with a short EXPORT_TTL_SECONDS).
        sweepTimer = setInterval(() => void sweepExports(), Math.min(60_000, config.EXPORT_TTL_SECONDS * 500))
        void sweepExports()
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
      clearInterval(sweepTimer)
      await unlisten?.().catch(() => {})
      const worker = thread
      if (worker) {
        // Each import finishes its batch in hand, each export stops; they go back to the queue,
        // then the thread ends.
        const closed = threadClosed.promise
        worker.postMessage({ type: 'stop' } satisfies ToJobThread)
        await Promise.allSettled([...running])
        worker.postMessage({ type: 'close' } satisfies ToJobThread)
        await closed
        await worker.terminate()
      }
    })
  },
  { name: 'jobs', dependencies: ['config', 'db', 'metrics', 'storage', 'exports'] },
)
