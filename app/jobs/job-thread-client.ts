import { Worker } from 'node:worker_threads'
import type { FastifyBaseLogger } from 'fastify'
import type { ExportJobRow } from '../../db/exports.ts'
import type { ImportJobRow } from '../../db/imports.ts'
import type { ExportOutcome } from '../exports/run-export.ts'
import type { RunOutcome } from '../imports/run-import.ts'
import type { FromJobThread, JobThreadData, ToJobThread } from './job-thread.ts'

/** How a job posted to a thread ended: the run's outcome, or `crashed` when the thread died. */
export type ThreadOutcome = RunOutcome | ExportOutcome | 'crashed'

/** A metric message of the thread (all but the lifecycle ones), for the main thread's books. */
export type ThreadMetric = Exclude<FromJobThread, { type: 'finished' | 'ready' | 'closed' }>

/**
 * The main thread's side of one job thread (app/jobs/job-thread.ts): starts it, posts it jobs,
 * and tells how each ended. A thread that dies (a crash, its heap limit) settles each of its
 * jobs as `crashed`; the runner then hands them back to the queue.
 */
export class JobThread {
  /** Resolves once the thread has loaded and listens for jobs. */
  readonly ready: Promise<void>
  /** Resolves once the thread has ended, whatever the reason. */
  readonly exited: Promise<void>
  private readonly worker: Worker
  private readonly pending = new Map<string, (outcome: ThreadOutcome) => void>()
  private readonly closed = Promise.withResolvers<void>()
  private alive = true

  constructor(data: JobThreadData, log: FastifyBaseLogger, onMetric: (message: ThreadMetric) => void) {
    const ready = Promise.withResolvers<void>()
    const exited = Promise.withResolvers<void>()
    this.ready = ready.promise
    this.exited = exited.promise
    // A thread that dies before it is ready must not leave a claim loop waiting for it.
    this.ready.catch(() => {})
    this.worker = new Worker(new URL('./job-thread.ts', import.meta.url), {
      workerData: data,
      execArgv: data.execArgv,
      // Its own heap limits: the thread allocates briskly (batches, query buffers), and a
      // moderate young generation keeps its collections cheap without growing the resident set.
      resourceLimits: { maxYoungGenerationSizeMb: 32, maxOldGenerationSizeMb: 256 },
    })
    this.worker.on('message', (message: FromJobThread) => {
      switch (message.type) {
        case 'finished':
          this.pending.get(message.jobId)?.(message.outcome)
          this.pending.delete(message.jobId)
          break
        case 'ready':
          ready.resolve()
          break
        case 'closed':
          this.closed.resolve()
          break
        default:
          onMetric(message)
      }
    })
    this.worker.on('error', (error) => log.error({ err: error }, 'a job thread failed'))
    this.worker.on('exit', (code) => {
      this.alive = false
      ready.reject(new Error(`the job thread exited (code ${code}) before it was ready`))
      this.closed.resolve()
      for (const settle of this.pending.values()) settle('crashed')
      if (this.pending.size > 0) log.error({ code, jobs: [...this.pending.keys()] }, 'a job thread died with its jobs')
      this.pending.clear()
      exited.resolve()
    })
  }

  /** Whether the thread still runs (a dead one takes no more jobs). */
  get running(): boolean {
    return this.alive
  }

  /** Jobs running in this thread now. */
  get jobs(): number {
    return this.pending.size
  }

  /** Runs an import or an export job in the thread; resolves with how it ended. */
  run(message: Extract<ToJobThread, { type: 'import' | 'export' }>): Promise<ThreadOutcome> {
    if (!this.alive) return Promise.resolve('crashed')
    const { promise, resolve } = Promise.withResolvers<ThreadOutcome>()
    this.pending.set(message.job.id, resolve)
    this.worker.postMessage(message satisfies ToJobThread)
    return promise
  }

  /** Asks every job to stop (an import after its batch in hand, an export at once) and hand itself back. */
  stop(): void {
    if (this.alive) this.worker.postMessage({ type: 'stop' } satisfies ToJobThread)
  }

  /** Ends the thread once its jobs have stopped: pools closed, then the thread. */
  async close(): Promise<void> {
    if (this.alive) {
      this.worker.postMessage({ type: 'close' } satisfies ToJobThread)
      await this.closed.promise
    }
    await this.worker.terminate()
    await this.exited
  }
}

/** What a thread runs: an import or an export job. */
export type ThreadJob = { kind: 'import'; job: ImportJobRow } | { kind: 'export'; job: ExportJobRow }
