import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { availableParallelism, hostname } from 'node:os'
import path from 'node:path'
import fp from 'fastify-plugin'
import type { JobThreadData } from '../app/jobs/job-thread.ts'
import { JobThread, type ThreadJob, type ThreadMetric, type ThreadOutcome } from '../app/jobs/job-thread-client.ts'
import {
  claimExportJob,
  type ExportJobRow,
  failExhaustedExportJobs,
  releaseLostExportRun,
  sweepExpiredExports,
} from '../db/exports.ts'
import { claimImportJob, failExhaustedImportJobs, type ImportJobRow, releaseLostImportRun } from '../db/imports.ts'
import { hasClaimableJob, JOB_CHANNEL, renewClaim } from '../db/jobs.ts'
import { importFormats } from '../schemas/imports.ts'
import { resourceNames } from '../schemas/jobs.ts'
import { problemBody } from '../schemas/problem.ts'

/**
 * Faults a test can inject (never set from the environment): a job thread that runs an import of
 * a file of this name exits at once, as a thread that crashes on a job would.
 */
export interface JobFaults {
  exitJobThreadOnSourceFilename?: string
}

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
  async (app, options: { faults?: JobFaults; threadExecArgv?: string[] }) => {
    const { config } = app
    const owner = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
    const client = app.metrics.client
    const recordsTotal = new client.Counter({
      name: 'bulkio_import_records_total',
      help: 'Import records processed, by resource, format and outcome (inserted, updated, failed).',
      labelNames: ['resource', 'format', 'outcome'],
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
      help: 'Bytes of import sources read (as stored: compressed when gzip), by resource and format.',
      labelNames: ['resource', 'format'],
    })
    const claims = new client.Counter({
      name: 'bulkio_job_claims_total',
      help: "Job runs claimed by this process, by kind and attempt: first, or again (a takeover of a dead owner's job, or a retry after a crash).",
      labelNames: ['kind', 'attempt'],
    })
    const exhaustedTotal = new client.Counter({
      name: 'bulkio_jobs_exhausted_total',
      help: 'Jobs failed with attempts_exhausted (JOB_MAX_ATTEMPTS runs that each ended abnormally), by kind.',
      labelNames: ['kind'],
    })
    const expiredTotal = new client.Counter({
      name: 'bulkio_exports_expired_total',
      help: 'Export files deleted at expiry, by resource and whether they were ever downloaded (fetched: true, false).',
      labelNames: ['resource', 'fetched'],
    })
    // Every known series from the start, at zero: a rate or an alert over them has data before
    // the first event (an alert on exhausted jobs, say, rather than on their absence).
    for (const resource of resourceNames) {
      for (const format of importFormats) {
        for (const outcome of ['inserted', 'updated', 'failed']) recordsTotal.inc({ resource, format, outcome }, 0)
        bytesRead.inc({ resource, format }, 0)
      }
      for (const status of ['completed', 'failed', 'cancelled']) jobsFinished.inc({ resource, status }, 0)
      for (const fetched of ['true', 'false']) expiredTotal.inc({ resource, fetched }, 0)
    }
    for (const kind of ['import', 'export']) {
      for (const attempt of ['first', 'again']) claims.inc({ kind, attempt }, 0)
      exhaustedTotal.inc({ kind }, 0)
    }
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
      exitOnSourceFilename: options.faults?.exitJobThreadOnSourceFilename,
      execArgv: options.threadExecArgv,
    }
    const onMetric = (message: ThreadMetric) => {
      switch (message.type) {
        case 'records':
          recordsTotal.inc(
            { resource: message.resource, format: message.format, outcome: message.outcome },
            message.count,
          )
          break
        case 'stage':
          batchSeconds.observe({ resource: message.resource, stage: message.stage }, message.seconds)
          break
        case 'bytes':
          bytesRead.inc({ resource: message.resource, format: message.format }, message.bytes)
          break
        case 'exported':
          app.exports.metrics.finished(
            { resource: message.resource, format: message.format, mode: 'async' },
            message.rows,
            message.bytes,
            message.seconds,
          )
          break
      }
    }
    // The jobs themselves run in a thread of their own (app/jobs/job-thread.ts), started when the
    // first job is there and ended on close; this side claims them and keeps the books. A job
    // whose earlier run ended abnormally (its thread or process died) runs in a thread of its
    // own: should it be what kills threads, it takes no other job down with it.
    let shared: JobThread | undefined
    const isolated = new Set<JobThread>()
    const startThread = () => new JobThread(data, app.log, onMetric)
    const exhausted = problemBody(
      'attempts_exhausted',
      `The job's runs ended abnormally ${config.JOB_MAX_ATTEMPTS} times (JOB_MAX_ATTEMPTS): the process or the job thread running it died each time. It is not tried again; the service's log has the details of each run.`,
    )

    const stopping = new AbortController()
    const running = new Set<Promise<void>>()
    let started = false
    let claiming = false
    let again = false
    let exportsFirst = true
    let timer: NodeJS.Timeout | undefined
    let sweepTimer: NodeJS.Timeout | undefined
    let unlisten: (() => Promise<void>) | undefined

    /** The thread a claimed job runs in: the shared one, or one of its own after a crash. */
    async function threadFor(attempts: number): Promise<{ thread: JobThread; own: boolean }> {
      if (attempts <= 1 && shared?.running) return { thread: shared, own: false }
      const thread = startThread()
      isolated.add(thread)
      void thread.exited.then(() => isolated.delete(thread))
      await thread.ready.catch(() => {})
      return { thread, own: true }
    }

    /** Runs a claimed job to its end; a run lost with its thread goes back to the queue, counted. */
    async function runClaimed(claimed: ThreadJob): Promise<ThreadOutcome> {
      claims.inc({ kind: claimed.kind, attempt: claimed.job.attempts > 1 ? 'again' : 'first' })
      const { thread, own } = await threadFor(claimed.job.attempts)
      // A thread of its own took a while to load (seconds, on a busy machine), and the job's
      // lease ran meanwhile: renew it before the run, or this process would find the job
      // expired, claim it again, and count a run that never began as an attempt.
      if (own && !(await renewBeforeRun(claimed))) {
        await thread.close().catch(() => {})
        app.log.warn({ job_id: claimed.job.id }, 'the job was taken over while its thread started')
        return 'lost'
      }
      const message =
        claimed.kind === 'import'
          ? { type: 'run' as const, job: claimed.job }
          : { type: 'export' as const, job: claimed.job }
      const outcome = await thread.run(message)
      if (own) await thread.close().catch(() => {})
      if (outcome === 'crashed') {
        const release = claimed.kind === 'import' ? releaseLostImportRun : releaseLostExportRun
        await release(app.sql, claimed.job.id, owner).catch((error) =>
          app.log.warn(
            { err: error, job_id: claimed.job.id },
            'handing back a crashed job failed; its lease will expire',
          ),
        )
      }
      return outcome
    }

    /** Extends a claimed job's lease; false when another claim took the job (or the database is away). */
    async function renewBeforeRun(claimed: ThreadJob): Promise<boolean> {
      try {
        return await renewClaim(app.sql, claimed.kind, claimed.job, owner, config.JOB_LEASE_SECONDS)
      } catch (error) {
        app.log.warn(
          { err: error, job_id: claimed.job.id },
          'renewing the lease of a job failed; it runs when its lease expires',
        )
        return false
      }
    }

    async function runExportJob(job: ExportJobRow): Promise<void> {
      app.log.info({ job_id: job.id, resource: job.resource, attempt: job.attempts }, 'export started')
      await runClaimed({ kind: 'export', job })
    }

    async function runJob(job: ImportJobRow): Promise<void> {
      const log = app.log.child({ job_id: job.id, resource: job.resource })
      const begun = performance.now()
      jobsStarted.inc({ resource: job.resource })
      jobsInProgress.inc({ resource: job.resource })
      log.info({ attempt: job.attempts, checkpoint_record: Number(job.checkpoint_record) }, 'import started')
      const outcome = await runClaimed({ kind: 'import', job })
      jobsInProgress.dec({ resource: job.resource })
      jobDuration.observe({ resource: job.resource, status: outcome }, (performance.now() - begun) / 1000)
      if (outcome === 'completed' || outcome === 'failed' || outcome === 'cancelled') {
        jobsFinished.inc({ resource: job.resource, status: outcome })
      }
    }

    /** The next job to run: imports and exports take turns, so that neither kind starves the other. */
    async function claimNext(): Promise<ThreadJob | undefined> {
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

    /** Fails the jobs that ran JOB_MAX_ATTEMPTS times without ending, rather than claim them again. */
    async function failExhaustedJobs(): Promise<void> {
      const imports = await failExhaustedImportJobs(app.sql, config.JOB_MAX_ATTEMPTS, exhausted)
      const exports = await failExhaustedExportJobs(app.sql, config.JOB_MAX_ATTEMPTS, exhausted)
      if (imports.length) exhaustedTotal.inc({ kind: 'import' }, imports.length)
      if (exports.length) exhaustedTotal.inc({ kind: 'export' }, exports.length)
      for (const id of imports) {
        app.log.error({ job_id: id, attempts: config.JOB_MAX_ATTEMPTS }, 'import failed: attempts exhausted')
      }
      for (const id of exports) {
        app.log.error({ job_id: id, attempts: config.JOB_MAX_ATTEMPTS }, 'export failed: attempts exhausted')
      }
    }

    /** Deletes the files of expired exports (any process may do it; each file is swept once). */
    async function sweepExports(): Promise<void> {
      try {
        for (const { fileName, resource, fetched } of await sweepExpiredExports(app.sql)) {
          await rm(path.join(app.storage.exportDir, fileName), { force: true })
          expiredTotal.inc({ resource, fetched: String(fetched) })
          app.log.info({ file: fileName, fetched }, 'expired export file deleted')
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
        // The shared thread (tens of MB) starts with the first job there is, and claiming waits
        // until it has loaded: no claimed job (its clock running) waits for it.
        if (!shared?.running) {
          if (shared || (await hasClaimableJob(app.sql))) {
            shared = startThread()
            await shared.ready.catch(() => {})
          }
          if (!shared?.running) return
        }
        do {
          again = false
          await failExhaustedJobs()
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
          .listen(JOB_CHANNEL, () => void claim())
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
      // Each import finishes its batch in hand, each export stops; they go back to the queue,
      // then the threads end.
      const threads = [...(shared ? [shared] : []), ...isolated]
      for (const thread of threads) thread.stop()
      await Promise.allSettled([...running])
      await Promise.allSettled(threads.map((thread) => thread.close()))
    })
  },
  { name: 'jobs', dependencies: ['config', 'db', 'metrics', 'storage', 'exports'] },
)
