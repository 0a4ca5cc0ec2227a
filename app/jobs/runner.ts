import type { FastifyBaseLogger } from 'fastify'
import type { Sql } from '../../db/connection.ts'
import {
  claimJob,
  failExhaustedJobs,
  hasClaimableJob,
  JOB_CHANNEL,
  type JobKind,
  releaseLostRun,
  renewClaim,
} from '../../db/job-queue.ts'
import type { Config } from '../../schemas/config.ts'
import { problemBody } from '../../schemas/problem.ts'
import type { ThreadJob, ThreadOutcome } from './job-thread-client.ts'
import type { JobThreads } from './job-threads.ts'

export type { JobKind }

/** What the runner counts (app/jobs/metrics.ts; import runs through plugins/imports.ts). */
export interface RunnerMetrics {
  claimed(kind: JobKind, again: boolean): void
  exhausted(kind: JobKind, count: number): void
  /** An import run begins; the function returned is told how it ended. */
  importStarted(resource: string): (outcome: ThreadOutcome) => void
}

export interface RunnerOptions {
  sql: Sql
  config: Pick<Config, 'WORKER_POOL_SIZE' | 'JOB_LEASE_SECONDS' | 'JOB_MAX_ATTEMPTS' | 'JOB_POLL_INTERVAL_MS'>
  /** This process's identity in the jobs' lease_owner column. */
  owner: string
  threads: JobThreads
  log: FastifyBaseLogger
  metrics: RunnerMetrics
}

/**
 * The claim loop: claims queued jobs, imports and exports in turn (and jobs whose owner's lease
 * expired), with FOR UPDATE SKIP LOCKED, up to WORKER_POOL_SIZE at once, and has the job threads
 * run them (they keep the leases alive). New jobs wake it through NOTIFY; a poll every
 * JOB_POLL_INTERVAL_MS also finds expired leases. A job that ran JOB_MAX_ATTEMPTS times without
 * ending is failed instead of claimed; a run lost with its thread goes back to the queue.
 */
export class JobRunner {
  readonly #options: RunnerOptions
  readonly #running = new Set<Promise<void>>()
  readonly #stopping = new AbortController()
  readonly #exhausted: Record<string, unknown>
  #started = false
  #claiming = false
  #again = false
  #exportsFirst = true
  #timer: NodeJS.Timeout | undefined
  #unlisten: (() => Promise<void>) | undefined

  constructor(options: RunnerOptions) {
    this.#options = options
    this.#exhausted = problemBody(
      'attempts_exhausted',
      `The job's runs ended abnormally ${options.config.JOB_MAX_ATTEMPTS} times (JOB_MAX_ATTEMPTS): the process or the job thread running it died each time. It is not tried again; the service's log has the details of each run.`,
    )
  }

  /** Jobs running in this process now. */
  get active(): number {
    return this.#running.size
  }

  /** Starts claiming: now, on each NOTIFY, and every JOB_POLL_INTERVAL_MS. */
  start(): void {
    if (this.#started) return
    this.#started = true
    const { sql, config, log } = this.#options
    this.#timer = setInterval(() => void this.#claim(), config.JOB_POLL_INTERVAL_MS)
    sql
      .listen(JOB_CHANNEL, () => void this.#claim())
      .then((subscription) => {
        this.#unlisten = subscription.unlisten
      })
      .catch((error) => log.warn({ err: error }, `LISTEN ${JOB_CHANNEL} failed; polling only`))
    void this.#claim()
  }

  /** Resolves when every job of this process has settled. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.#running])
  }

  /**
   * Stops claiming; each import finishes the batch in hand, each export stops, and they go back to
   * the queue; then the threads end.
   */
  async close(): Promise<void> {
    this.#stopping.abort()
    clearInterval(this.#timer)
    await this.#unlisten?.().catch(() => {})
    this.#options.threads.stop()
    await this.idle()
    await this.#options.threads.close()
  }

  /** Claims jobs while there is room; a wake-up during a claim round runs another round. */
  async #claim(): Promise<void> {
    if (!this.#started || this.#stopping.signal.aborted) return
    if (this.#claiming) {
      this.#again = true
      return
    }
    this.#claiming = true
    const { sql, config, threads, log } = this.#options
    try {
      if (!(await threads.sharedReady(() => hasClaimableJob(sql)))) return
      do {
        this.#again = false
        await this.#failExhaustedJobs()
        while (this.#running.size < config.WORKER_POOL_SIZE && !this.#stopping.signal.aborted) {
          const next = await this.#claimNext()
          if (!next) break
          const run: Promise<void> = this.#run(next).finally(() => {
            this.#running.delete(run)
            void this.#claim()
          })
          this.#running.add(run)
        }
      } while (this.#again && !this.#stopping.signal.aborted)
    } catch (error) {
      log.warn({ err: error }, 'claiming jobs failed; retrying at the next poll')
    } finally {
      this.#claiming = false
    }
  }

  /** The next job to run: imports and exports take turns, so that neither kind starves the other. */
  async #claimNext(): Promise<ThreadJob | undefined> {
    const { sql, owner, config } = this.#options
    const claimImport = async () => {
      const job = await claimJob(sql, 'import', owner, config.JOB_LEASE_SECONDS, config.JOB_MAX_ATTEMPTS)
      return job && { kind: 'import' as const, job }
    }
    const claimExport = async () => {
      const job = await claimJob(sql, 'export', owner, config.JOB_LEASE_SECONDS, config.JOB_MAX_ATTEMPTS)
      return job && { kind: 'export' as const, job }
    }
    this.#exportsFirst = !this.#exportsFirst
    return this.#exportsFirst ? ((await claimExport()) ?? claimImport()) : ((await claimImport()) ?? claimExport())
  }

  /** Runs a claimed job to its end, with its log lines and metrics. */
  async #run(claimed: ThreadJob): Promise<void> {
    const { log, metrics } = this.#options
    const { job } = claimed
    if (claimed.kind === 'export') {
      log.info({ job_id: job.id, resource: job.resource, attempt: job.attempts }, 'export started')
      await this.#runClaimed(claimed)
      return
    }
    const finished = metrics.importStarted(job.resource)
    log.info(
      {
        job_id: job.id,
        resource: job.resource,
        attempt: job.attempts,
        checkpoint_record: Number(claimed.job.checkpoint_record),
      },
      'import started',
    )
    finished(await this.#runClaimed(claimed))
  }

  /** Runs a claimed job in its thread; a run lost with its thread goes back to the queue, counted. */
  async #runClaimed(claimed: ThreadJob): Promise<ThreadOutcome> {
    const { sql, owner, threads, log, metrics } = this.#options
    metrics.claimed(claimed.kind, claimed.job.attempts > 1)
    const { thread, own } = await threads.threadFor(claimed.job.attempts)
    // A thread of its own took a while to load (seconds, on a busy machine), and the job's lease
    // ran meanwhile: renew it before the run, or this process would find the job expired, claim
    // it again, and count a run that never began as an attempt.
    if (own && !(await this.#renewBeforeRun(claimed))) {
      await thread.close().catch(() => {})
      log.warn({ job_id: claimed.job.id }, 'the job was taken over while its thread started')
      return 'lost'
    }
    const message =
      claimed.kind === 'import'
        ? { type: 'import' as const, job: claimed.job }
        : { type: 'export' as const, job: claimed.job }
    const outcome = await thread.run(message)
    if (own) await thread.close().catch(() => {})
    if (outcome === 'crashed') {
      await releaseLostRun(sql, claimed.kind, claimed.job.id, owner).catch((error) =>
        log.warn({ err: error, job_id: claimed.job.id }, 'handing back a crashed job failed; its lease will expire'),
      )
    }
    return outcome
  }

  /** Extends a claimed job's lease; false when another claim took the job (or the database is away). */
  async #renewBeforeRun(claimed: ThreadJob): Promise<boolean> {
    const { sql, owner, config, log } = this.#options
    try {
      return await renewClaim(sql, claimed.kind, claimed.job, owner, config.JOB_LEASE_SECONDS)
    } catch (error) {
      log.warn(
        { err: error, job_id: claimed.job.id },
        'renewing the lease of a job failed; it runs when its lease expires',
      )
      return false
    }
  }

  /** Fails the jobs that ran JOB_MAX_ATTEMPTS times without ending, rather than claim them again. */
  async #failExhaustedJobs(): Promise<void> {
    const { sql, config, log, metrics } = this.#options
    const failed = {
      import: await failExhaustedJobs(sql, 'import', config.JOB_MAX_ATTEMPTS, this.#exhausted),
      export: await failExhaustedJobs(sql, 'export', config.JOB_MAX_ATTEMPTS, this.#exhausted),
    }
    for (const kind of ['import', 'export'] as const) {
      if (failed[kind].length) metrics.exhausted(kind, failed[kind].length)
      for (const id of failed[kind]) {
        log.error({ job_id: id, attempts: config.JOB_MAX_ATTEMPTS }, `${kind} failed: attempts exhausted`)
      }
    }
  }
}
