import { setImmediate as nextTurn } from 'node:timers/promises'
import Tinypool from 'tinypool'
import importBatch, { type BatchResult, type BatchTask, warmUp } from './import-batch.ts'

/**
 * Where an import's batches are parsed and validated (import-batch.ts): in validation threads
 * (IMPORT_THREADS of them), or, with none, in the job thread itself, between its database writes.
 * A validation thread is an isolate of its own (~20 MB); without it the job thread validates,
 * splits and encodes one after the other, and a 1M-row import takes ~20 % longer on two cores
 * (docs/benchmarks.md, "Memory").
 */
export interface BatchValidation {
  /** Batches validated at once: the import keeps one more than this in flight. */
  readonly parallelism: number
  validate(task: BatchTask): Promise<BatchResult>
  /** Loads the validators of these resource modules ahead of the first batch. */
  warmUp(modules: readonly string[]): void
  close(): Promise<void>
}

export function batchValidation(threads: number, execArgv: string[] | undefined): BatchValidation {
  return threads > 0 ? new ThreadValidation(threads, execArgv) : new InThreadValidation()
}

/** Validation threads (tinypool), started when an import needs them, ended after 30 s idle. */
class ThreadValidation implements BatchValidation {
  readonly parallelism: number
  readonly #pool: Tinypool

  constructor(threads: number, execArgv: string[] | undefined) {
    this.parallelism = threads
    this.#pool = new Tinypool({
      filename: new URL('./validation-thread.ts', import.meta.url).href,
      minThreads: 0,
      execArgv,
      maxThreads: threads,
      idleTimeout: 30_000,
      // Validation allocates fast (decoded text, parsed records, SQL literals): a small young
      // generation collects that garbage early instead of growing the resident set.
      resourceLimits: { maxYoungGenerationSizeMb: 12, maxOldGenerationSizeMb: 256 },
    })
  }

  validate(task: BatchTask): Promise<BatchResult> {
    // The batch's bytes move to the thread without a copy.
    return this.#pool.run(task, { transferList: [task.chunk.buffer as ArrayBuffer] })
  }

  /**
   * Starts the threads when an import begins and none runs (the first import, or the first after
   * they ended idle): they load beside the opening of the source and the first split, rather than
   * when the first batch comes (a fresh thread takes a few tenths of a second).
   */
  warmUp(modules: readonly string[]): void {
    if (this.#pool.threads.length > 0) return
    for (let thread = 0; thread < this.parallelism; thread++) {
      this.#pool.run(modules, { name: 'warmUp' }).catch(() => {})
    }
  }

  close(): Promise<void> {
    return this.#pool.destroy()
  }
}

/**
 * The job thread validates each batch itself, on a turn of its own: the replies of the database
 * to the previous batch's writes are handled between two batches.
 */
class InThreadValidation implements BatchValidation {
  readonly parallelism = 1

  async validate(task: BatchTask): Promise<BatchResult> {
    await nextTurn()
    return importBatch(task)
  }

  warmUp(modules: readonly string[]): void {
    warmUp(modules).catch(() => {})
  }

  async close(): Promise<void> {}
}
