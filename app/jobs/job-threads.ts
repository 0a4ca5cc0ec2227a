import type { FastifyBaseLogger } from 'fastify'
import type { JobThreadData } from './job-thread.ts'
import { JobThread, type ThreadMetric } from './job-thread-client.ts'

/**
 * The job threads of a process: one shared thread that runs its jobs, started when the first job
 * is there (it weighs tens of MB) and started again should it die; and, for a job whose earlier
 * run ended abnormally (its thread or process died), a thread of its own, so that a job that
 * kills threads takes no other job down with it.
 */
export class JobThreads {
  readonly #data: JobThreadData
  readonly #log: FastifyBaseLogger
  readonly #onMetric: (message: ThreadMetric) => void
  #shared: JobThread | undefined
  readonly #isolated = new Set<JobThread>()

  constructor(data: JobThreadData, log: FastifyBaseLogger, onMetric: (message: ThreadMetric) => void) {
    this.#data = data
    this.#log = log
    this.#onMetric = onMetric
  }

  /**
   * Whether the shared thread runs, once it has loaded: started when `hasWork` says a job waits,
   * or at once when an earlier one died. Claims wait for it, so that no claimed job (its lease
   * running) waits for a thread to load.
   */
  async sharedReady(hasWork: () => Promise<boolean>): Promise<boolean> {
    if (this.#shared?.running) return true
    if (this.#shared || (await hasWork())) {
      this.#shared = this.#start()
      await this.#shared.ready.catch(() => {})
    }
    return Boolean(this.#shared?.running)
  }

  /** The thread a claimed job runs in: the shared one, or (`own`) one of its own after a crash. */
  async threadFor(attempts: number): Promise<{ thread: JobThread; own: boolean }> {
    if (attempts <= 1 && this.#shared?.running) return { thread: this.#shared, own: false }
    const thread = this.#start()
    this.#isolated.add(thread)
    void thread.exited.then(() => this.#isolated.delete(thread))
    await thread.ready.catch(() => {})
    return { thread, own: true }
  }

  /** Asks every job of every thread to stop and hand itself back. */
  stop(): void {
    for (const thread of this.#all()) thread.stop()
  }

  /** Ends every thread (after stop() and once their jobs have settled). */
  async close(): Promise<void> {
    await Promise.allSettled(this.#all().map((thread) => thread.close()))
  }

  #all(): JobThread[] {
    return [...(this.#shared ? [this.#shared] : []), ...this.#isolated]
  }

  #start(): JobThread {
    return new JobThread(this.#data, this.#log, this.#onMetric)
  }
}
