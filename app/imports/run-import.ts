import type { FastifyBaseLogger } from 'fastify'
import type Tinypool from 'tinypool'
import type { Sql } from '../../db/connection.ts'
import { isDataError, isTransientConflict } from '../../db/errors.ts'
import {
  commitBatch,
  finishImportJob,
  type ImportJobRow,
  releaseImportJob,
  renewLease,
  restartImportJob,
} from '../../db/imports.ts'
import { applyRange, type UpsertError } from '../../db/upsert.ts'
import type { BatchResult, BatchTask } from '../workers/import-batch.ts'
import { PROBLEM_TOO_LARGE, PROBLEM_UNTERMINATED } from '../workers/import-batch.ts'
import { type ImportFormat, type RecordBatch, RecordSplitter, SourceFormatError } from './record-splitter.ts'
import { type ImportResource, importResources } from './resources.ts'
import { openSource, parseHeader, SourceRejected, unknownFieldsWarning } from './source.ts'

// Runs one claimed import job from its checkpoint to its end. The main thread reads and splits
// the source; worker threads parse and validate batches (several at once, ahead of the writer);
// the writer applies the batches in file order, each in one transaction with the job's
// counters, checkpoint and error rows, so that a crash at any point leaves a consistent job
// that resumes after its last committed batch.

export interface ImportMetrics {
  records(resource: string, outcome: 'inserted' | 'updated' | 'failed', count: number): void
  batchStage(resource: string, stage: 'parse' | 'validate' | 'write', seconds: number): void
  bytesRead(resource: string, bytes: number): void
}

export interface ImportRun {
  sql: Sql
  pool: Tinypool
  /** This process's identity in lease_owner. */
  owner: string
  leaseSeconds: number
  maxRecordBytes: number
  /** Error rows kept per job; further errors are counted, not stored. */
  maxErrorsPerJob: number
  log: FastifyBaseLogger
  metrics: ImportMetrics
  /** Aborted at shutdown: the job stops after the batch in hand and goes back to the queue. */
  signal: AbortSignal
  /** Fetches a URL source into IMPORT_DIR (app/imports/download.ts); returns where, and its format. */
  download?: (job: ImportJobRow) => Promise<{ path: string; format: ImportFormat; warnings: string[] }>
}

/** How a run ended: the job's final status, or `released` (shutdown) / `lost` (lease gone). */
export type RunOutcome = 'completed' | 'failed' | 'cancelled' | 'released' | 'lost'

class LeaseLost extends Error {}

interface Counters {
  processed: number
  inserted: number
  updated: number
  failed: number
  errorsStored: number
}

/** A problem body (RFC 9457) for a job that failed. */
function jobProblem(status: number, title: string, detail: string, code: string) {
  return { type: `urn:bulk-io:problem:${code.replaceAll('_', '-')}`, title, status, detail, code }
}

export async function runImport(job: ImportJobRow, run: ImportRun): Promise<RunOutcome> {
  const resource = importResources[job.resource] as ImportResource
  const log = run.log.child({ job_id: job.id, resource: job.resource })
  let leaseLost = false
  const heartbeat = setInterval(
    () => {
      renewLease(run.sql, job.id, run.owner, run.leaseSeconds)
        .then(({ owned }) => {
          if (!owned) leaseLost = true
        })
        .catch((error) => log.warn({ err: error }, 'lease renewal failed'))
    },
    Math.max(1000, (run.leaseSeconds * 1000) / 3),
  )
  try {
    return await execute(job, resource, run, log, () => leaseLost)
  } catch (error) {
    if (error instanceof LeaseLost) {
      log.warn('lease lost: another process owns the job now')
      return 'lost'
    }
    if (error instanceof SourceRejected || error instanceof SourceFormatError) {
      const detail = `${error.message.charAt(0).toUpperCase()}${error.message.slice(1)}.`
      await finish(job, run, log, 'failed', jobProblem(422, 'Import source rejected', detail, 'unprocessable'))
      return 'failed'
    }
    throw error
  } finally {
    clearInterval(heartbeat)
  }
}

async function execute(
  job: ImportJobRow,
  resource: ImportResource,
  run: ImportRun,
  log: FastifyBaseLogger,
  isLeaseLost: () => boolean,
): Promise<RunOutcome> {
  let path = job.source_path
  if (!path) {
    if (!run.download) throw new Error('a URL job needs a downloader')
    const downloaded = await run.download(job)
    path = downloaded.path
    job = { ...job, format: downloaded.format, warnings: downloaded.warnings }
  }
  const format = job.format as ImportFormat
  if (job.dry_run && Number(job.checkpoint_record) > 0) {
    // A dry run's writes were rolled back with its transaction: it can only start over.
    await restartImportJob(run.sql, job.id, run.owner)
    job = {
      ...job,
      processed: '0',
      inserted: '0',
      updated: '0',
      failed: '0',
      errors_stored: '0',
      checkpoint_record: '0',
    }
  }
  const counters: Counters = {
    processed: Number(job.processed),
    inserted: Number(job.inserted),
    updated: Number(job.updated),
    failed: Number(job.failed),
    errorsStored: Number(job.errors_stored),
  }
  const started = performance.now()
  const processedAtStart = counters.processed
  const warnings = [...job.warnings]
  const unknownJsonFields = new Set<string>()
  const splitter = new RecordSplitter({
    format,
    batchRecords: job.batch_size,
    maxRecordBytes: run.maxRecordBytes,
    skipRecords: Number(job.checkpoint_record),
  })
  const source = await openSource(path)
  let header: string[] | undefined

  const writer = new BatchWriter(job, resource, run, counters, log)
  const depth = Math.max(2, run.pool.options.maxThreads + 1)
  const inFlight: { batch: RecordBatch; bytesRead: number; result: Promise<BatchResult> }[] = []

  const dispatch = (batch: RecordBatch, bytesRead: number) => {
    if (format === 'csv' && !header) {
      if (!splitter.header) throw new SourceRejected('the CSV file has no header row')
      const parsed = parseHeader(splitter.header.bytes, resource)
      header = parsed.columns
      for (const warning of parsed.warnings) if (!warnings.includes(warning)) warnings.push(warning)
    }
    const task: BatchTask = {
      resource: resource.name,
      format,
      chunk: batch.chunk,
      starts: batch.starts,
      lengths: Int32Array.from(batch.spans, (span) => span.length),
      problems: Uint8Array.from(batch.spans, (span) =>
        span.problem === 'too_large' ? PROBLEM_TOO_LARGE : span.problem === 'unterminated' ? PROBLEM_UNTERMINATED : 0,
      ),
      header,
      columns: resource.columns,
      nullableColumns: resource.nullableColumns,
      maxRecordBytes: run.maxRecordBytes,
    }
    const result = run.pool.run(task, { transferList: [batch.chunk.buffer as ArrayBuffer] }) as Promise<BatchResult>
    result.catch(() => {}) // awaited in order below; never an unhandled rejection if we stop early
    inFlight.push({ batch, bytesRead, result })
  }

  let bytesCounted = Number(job.bytes_read)
  const writeNext = async (): Promise<RunOutcome | null> => {
    const next = inFlight.shift()
    if (!next) return null
    const result = await next.result
    if (next.bytesRead > bytesCounted) {
      run.metrics.bytesRead(resource.name, next.bytesRead - bytesCounted)
      bytesCounted = next.bytesRead
    }
    run.metrics.batchStage(resource.name, 'parse', result.parseMs / 1000)
    run.metrics.batchStage(resource.name, 'validate', result.validateMs / 1000)
    for (const field of result.unknownFields) unknownJsonFields.add(field)
    if (unknownJsonFields.size) {
      const warning = unknownFieldsWarning([...unknownJsonFields].sort())
      const index = warnings.findIndex((text) => text.startsWith('unknown field'))
      if (index >= 0) warnings[index] = warning
      else warnings.push(warning)
    }
    for (const warning of splitter.warnings) if (!warnings.includes(warning)) warnings.push(warning)
    const outcome = await writer.write(next.batch, result, next.bytesRead, warnings)
    if (isLeaseLost()) throw new LeaseLost()
    if (outcome === 'cancelled') {
      await finish(job, run, log, 'cancelled', null, next.bytesRead, counters, started, processedAtStart)
      return 'cancelled'
    }
    if (run.signal.aborted) {
      await releaseImportJob(run.sql, job.id, run.owner)
      log.info(
        { checkpoint_record: next.batch.spans.at(-1)?.record },
        'import released at shutdown; it resumes from its checkpoint',
      )
      return 'released'
    }
    return null
  }

  try {
    await writer.begin()
    for await (const chunk of source.bytes) {
      for (const batch of splitter.push(chunk)) {
        dispatch(batch, source.bytesRead())
        if (inFlight.length >= depth) {
          const stopped = await writeNext()
          if (stopped) return stopped
        }
      }
    }
    for (const batch of splitter.end()) dispatch(batch, source.bytesRead())
    if (format === 'csv' && !splitter.header) throw new SourceRejected('the CSV file is empty: it has no header row')
    while (inFlight.length) {
      const stopped = await writeNext()
      if (stopped) return stopped
    }
    await writer.end()
  } finally {
    source.close()
    await writer.close()
  }
  for (const warning of splitter.warnings) if (!warnings.includes(warning)) warnings.push(warning)
  await finish(job, run, log, 'completed', null, source.bytesRead(), counters, started, processedAtStart)
  return 'completed'
}

async function finish(
  job: ImportJobRow,
  run: ImportRun,
  log: FastifyBaseLogger,
  status: 'completed' | 'failed' | 'cancelled',
  problem: Record<string, unknown> | null,
  bytesRead?: number,
  counters?: Counters,
  started?: number,
  processedAtStart = 0,
): Promise<void> {
  const row = await finishImportJob(run.sql, job.id, run.owner, status, problem, bytesRead)
  if (!row) throw new LeaseLost()
  const processed = Number(row.processed)
  const seconds = started === undefined ? 0 : (performance.now() - started) / 1000
  log.info(
    {
      status,
      dry_run: row.dry_run,
      processed,
      inserted: Number(row.inserted),
      updated: Number(row.updated),
      failed: Number(row.failed),
      rows_per_second: seconds > 0 ? Math.round((processed - processedAtStart) / seconds) : 0,
      error_rate: processed ? Number(row.failed) / processed : 0,
      duration_seconds: Math.round(seconds * 1000) / 1000,
      ...(problem ? { error: problem.detail } : {}),
    },
    'import finished',
  )
  void counters
}

/**
 * Applies batches in order. A normal run gives each batch its own transaction; a dry run keeps
 * one transaction for the whole job (so later batches see the earlier ones) and rolls it back
 * at the end, while the job's counters and errors are committed outside it.
 */
class BatchWriter {
  private readonly job: ImportJobRow
  private readonly resource: ImportResource
  private readonly run: ImportRun
  private readonly counters: Counters
  private readonly log: FastifyBaseLogger
  private dryRun: { sql: Sql; done: () => void; finished: Promise<unknown> } | undefined

  constructor(job: ImportJobRow, resource: ImportResource, run: ImportRun, counters: Counters, log: FastifyBaseLogger) {
    this.job = job
    this.resource = resource
    this.run = run
    this.counters = counters
    this.log = log
  }

  private lockKey(): string {
    return `bulk-io:import:${this.resource.name}`
  }

  async begin(): Promise<void> {
    if (!this.job.dry_run) return
    // A transaction kept open for the whole dry run; rolled back by close().
    const ready = Promise.withResolvers<Sql>()
    const release = Promise.withResolvers<void>()
    const finished = this.run.sql
      .begin(async (tx) => {
        await tx`select pg_advisory_xact_lock(hashtextextended(${this.lockKey()}, 0))`
        ready.resolve(tx as unknown as Sql)
        await release.promise
        throw new DryRunRollback()
      })
      .catch((error) => {
        if (!(error instanceof DryRunRollback)) ready.reject(error)
      })
    this.dryRun = { sql: await ready.promise, done: release.resolve, finished }
  }

  async end(): Promise<void> {}

  async close(): Promise<void> {
    if (!this.dryRun) return
    this.dryRun.done()
    await this.dryRun.finished
    this.dryRun = undefined
  }

  /** Applies one batch and commits it with the job's counters; returns whether to go on. */
  async write(
    batch: RecordBatch,
    result: BatchResult,
    bytesRead: number,
    warnings: string[],
  ): Promise<'go' | 'cancelled'> {
    const started = performance.now()
    const records = batch.spans.length
    const last = batch.spans[records - 1]
    for (let attempt = 1; ; attempt++) {
      try {
        const outcome = this.dryRun
          ? await this.writeDryRun(batch, result, bytesRead, warnings)
          : await this.writeInTransaction(batch, result, bytesRead, warnings)
        const seconds = (performance.now() - started) / 1000
        this.run.metrics.batchStage(this.resource.name, 'write', seconds)
        this.log.debug({ record: last?.record, records, seconds }, 'batch committed')
        return outcome
      } catch (error) {
        if (!isTransientConflict(error) || attempt >= 5) throw error
        await new Promise((resolve) => setTimeout(resolve, 20 * 2 ** attempt * (0.5 + Math.random())))
      }
    }
  }

  private async writeInTransaction(
    batch: RecordBatch,
    result: BatchResult,
    bytesRead: number,
    warnings: string[],
  ): Promise<'go' | 'cancelled'> {
    let isolate = false
    for (;;) {
      try {
        return await this.run.sql.begin(async (tx) => {
          const sql = tx as unknown as Sql
          await sql`select pg_advisory_xact_lock(hashtextextended(${this.lockKey()}, 0))`
          const applied = await this.apply(sql, batch, result, isolate)
          return this.commit(sql, batch, result, applied, bytesRead, warnings)
        })
      } catch (error) {
        // A record the database refuses aborts the whole statement: redo the batch isolating it.
        if (isolate || !isDataError(error)) throw error
        isolate = true
      }
    }
  }

  private async writeDryRun(
    batch: RecordBatch,
    result: BatchResult,
    bytesRead: number,
    warnings: string[],
  ): Promise<'go' | 'cancelled'> {
    const sql = (this.dryRun as { sql: Sql }).sql
    const applied = await this.apply(sql, batch, result, true)
    return this.commit(this.run.sql, batch, result, applied, bytesRead, warnings)
  }

  /** Runs the upsert over the batch; isolating, each range runs in a savepoint and is halved on failure. */
  private async apply(sql: Sql, batch: RecordBatch, result: BatchResult, isolate: boolean) {
    const total = { inserted: 0, updated: 0, errors: [] as UpsertError[] }
    if (result.valid === 0) return total
    const end = batch.spans.length + 1
    if (!isolate) return applyRange(sql, this.resource.upsert, result.params, 1, end)
    const isolateRange = async (from: number, to: number): Promise<void> => {
      try {
        const part = await (sql as unknown as { savepoint: <T>(fn: (sp: Sql) => Promise<T>) => Promise<T> }).savepoint(
          (savepoint) => applyRange(savepoint, this.resource.upsert, result.params, from, to),
        )
        total.inserted += part.inserted
        total.updated += part.updated
        total.errors.push(...part.errors)
      } catch (error) {
        if (!isDataError(error)) throw error
        if (to - from <= 1) {
          total.errors.push({
            ord: from,
            code: 'database_error',
            message: `the database refused the record: ${(error as Error).message}`,
          })
          return
        }
        const middle = Math.floor((from + to) / 2)
        await isolateRange(from, middle)
        await isolateRange(middle, to)
      }
    }
    await isolateRange(1, end)
    return total
  }

  private async commit(
    sql: Sql,
    batch: RecordBatch,
    result: BatchResult,
    applied: { inserted: number; updated: number; errors: UpsertError[] },
    bytesRead: number,
    warnings: string[],
  ): Promise<'go' | 'cancelled'> {
    const rows: Record<string, unknown>[] = []
    const failed = new Set<number>()
    const seq = new Map<number, number>()
    const add = (
      index: number,
      error: { field?: string; code: string; message: string; value?: string | null; id?: string },
    ) => {
      failed.add(index)
      const span = batch.spans[index]
      if (!span) return
      const next = seq.get(index) ?? 0
      seq.set(index, next + 1)
      rows.push({
        record: span.record,
        seq: next,
        line: span.line,
        record_id: error.id ?? null,
        field: error.field ?? null,
        code: error.code,
        message: error.message,
        value: error.value ?? null,
        byte_offset: span.offset,
        byte_length: span.length,
      })
    }
    for (const error of result.errors) add(error.index, error)
    for (const error of applied.errors) {
      add(error.ord - 1, { ...error, id: error.id ?? undefined })
    }
    rows.sort((a, b) => (a.record as number) - (b.record as number) || (a.seq as number) - (b.seq as number))
    const room = Math.max(0, this.run.maxErrorsPerJob - this.counters.errorsStored)
    const kept = rows.length > room ? rows.slice(0, room) : rows
    if (kept.length < rows.length) {
      const warning = `only the first ${this.run.maxErrorsPerJob} errors are kept (IMPORT_MAX_ERRORS); later ones are counted, not listed`
      if (!warnings.includes(warning)) warnings.push(warning)
    }
    const last = batch.spans[batch.spans.length - 1] as (typeof batch.spans)[number]
    const batchCounters = {
      processed: batch.spans.length,
      inserted: applied.inserted,
      updated: applied.updated,
      failed: failed.size,
    }
    const committed = await commitBatch(sql, {
      jobId: this.job.id,
      owner: this.run.owner,
      leaseSeconds: this.run.leaseSeconds,
      ...batchCounters,
      errorsJson: JSON.stringify(kept),
      bytesRead,
      checkpointRecord: last.record,
      checkpointLine: batch.endLine,
      checkpointOffset: batch.endOffset,
      warnings,
    })
    if (!committed) throw new LeaseLost()
    this.counters.processed += batchCounters.processed
    this.counters.inserted += batchCounters.inserted
    this.counters.updated += batchCounters.updated
    this.counters.failed += batchCounters.failed
    this.counters.errorsStored += kept.length
    this.run.metrics.records(this.resource.name, 'inserted', batchCounters.inserted)
    this.run.metrics.records(this.resource.name, 'updated', batchCounters.updated)
    this.run.metrics.records(this.resource.name, 'failed', batchCounters.failed)
    return committed.cancelRequested ? 'cancelled' : 'go'
  }
}

class DryRunRollback extends Error {}
