import type { FastifyBaseLogger } from 'fastify'
import type { Sql } from '../../db/connection.ts'
import {
  deferImportJob,
  finishImportJob,
  type ImportJobRow,
  importJobControl,
  type JobWaiting,
  restartImportJob,
  setImportWaiting,
} from '../../db/imports.ts'
import { releaseJob, renewLease } from '../../db/job-queue.ts'
import { type ResourceDescriptor, resourceOf } from '../../resources/index.ts'
import { problemBody } from '../../schemas/problem.ts'
import { StoreError } from '../storage/object-store.ts'
import type { Stores } from '../storage/stores.ts'
import type { BatchValidation } from '../workers/batch-validation.ts'
// Types only: batch-validation.ts runs the batch task, in validation threads or in this one.
import type { BatchResult, BatchTask } from '../workers/import-batch.ts'
import {
  type BatchStatement,
  type BatchWriter,
  type CommittedBatch,
  DryRunWriter,
  LaneWriter,
  LeaseLost,
  ResourceBusy,
  type WriterState,
} from './batch-writer.ts'
import {
  type ImportFormat,
  type RecordBatch,
  RecordSplitter,
  SourceFormatError,
  type SplitterOptions,
  splitterProblemCodes,
} from './record-splitter.ts'
import {
  isGzip,
  locateSource,
  openSource,
  parseHeader,
  readCsvHeader,
  type SourceCorrupt,
  type SourceLocation,
  SourceRejected,
  sourceCorruption,
} from './source.ts'
import { type UnknownFieldList, UnknownFields } from './unknown-fields.ts'

// Runs one claimed import job from its checkpoint to its end, in the import thread
// (app/jobs/job-thread.ts). It reads and splits the source; the validation threads parse and
// validate batches (ahead of the writer); the writer (app/imports/batch-writer.ts) applies the
// batches in file order, each in one transaction with the job's counters, checkpoint and error
// rows, so that a crash at any point leaves a consistent job that resumes after its last
// committed batch.
//
// Longer than most files on purpose: a job's whole run (resume, inspection, the parse pipeline, the
// writer, cancel and lease control, the end) reads as one sequence.

/** How often a running job looks for a cancel request (and checks it still owns its lease). */
const CONTROL_INTERVAL_MS = 1000
/** A job handed back because another import writes its resource is claimed again after this. */
const RESOURCE_BUSY_RETRY_MS = 1000

export interface ImportMetrics {
  records(resource: string, format: ImportFormat, outcome: 'inserted' | 'updated' | 'failed', count: number): void
  batchStage(resource: string, stage: 'parse' | 'validate' | 'write', seconds: number): void
  bytesRead(resource: string, format: ImportFormat, bytes: number): void
  /** A batch committed, written by the insert-first statement or the upsert. */
  batchWritten(resource: string, statement: BatchStatement): void
}

/** Fetches a URL source into the imports' store (app/imports/download.ts); `signal` stops it. */
export type Downloader = (
  job: ImportJobRow,
  signal: AbortSignal,
) => Promise<{ path: string; format: ImportFormat; warnings: string[]; unknownFields: UnknownFieldList }>

export interface ImportRun {
  /** The job's bookkeeping (leases, finishing). */
  sql: Sql
  /** Connections for the batches: each job reserves up to two while it writes. */
  writeSql: Sql
  /** Where batches are parsed and validated (validation threads, or this thread). */
  validation: BatchValidation
  /** The resources a job may name (the app's). */
  resources: readonly ResourceDescriptor[]
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
  /** Where sources are (source_path: a key of the imports' store, or a s3:// URL). */
  stores: Stores
  download?: Downloader
}

/**
 * How a run ended: the job's final status, or `released` (shutdown) / `lost` (lease gone) /
 * `deferred` (another import writes its resource: back in the queue until it is done).
 */
export type RunOutcome = 'completed' | 'failed' | 'cancelled' | 'released' | 'lost' | 'deferred'

interface Counters {
  processed: number
  inserted: number
  updated: number
  failed: number
  errorsStored: number
}

/**
 * What a running job learns from its row while it runs: whether a cancel was asked (within
 * CONTROL_INTERVAL_MS) and whether it still owns its lease, which it renews.
 */
class JobControl {
  /** Aborted once a cancel request is seen. */
  readonly cancel = new AbortController()
  leaseLost = false
  private readonly timer: NodeJS.Timeout
  private lastRenewal = Date.now()
  private busy = false

  constructor(job: ImportJobRow, run: ImportRun, log: FastifyBaseLogger) {
    const renewEveryMs = Math.max(CONTROL_INTERVAL_MS, (run.leaseSeconds * 1000) / 3)
    this.timer = setInterval(() => {
      if (this.busy) return
      this.busy = true
      const renew = Date.now() - this.lastRenewal >= renewEveryMs
      const check = renew
        ? renewLease(run.sql, 'import', job.id, run.owner, run.leaseSeconds)
        : importJobControl(run.sql, job.id, run.owner)
      check
        .then(({ owned, cancelRequested }) => {
          if (renew && owned) this.lastRenewal = Date.now()
          if (!owned) this.leaseLost = true
          if (cancelRequested || !owned) this.cancel.abort()
        })
        .catch((error) => log.warn({ err: error }, 'checking the job failed; trying again'))
        .finally(() => {
          this.busy = false
        })
    }, CONTROL_INTERVAL_MS)
  }

  stop(): void {
    clearInterval(this.timer)
  }
}

export async function runImport(job: ImportJobRow, run: ImportRun): Promise<RunOutcome> {
  const resource = resourceOf(run.resources, job.resource)
  const log = run.log.child({ job_id: job.id, resource: job.resource })
  const control = new JobControl(job, run, log)
  try {
    return await execute(job, resource, run, log, control)
  } catch (error) {
    if (error instanceof LeaseLost || control.leaseLost) {
      log.warn('lease lost: another process owns the job now')
      return 'lost'
    }
    if (error instanceof ResourceBusy) {
      await deferImportJob(run.sql, job.id, run.owner, RESOURCE_BUSY_RETRY_MS)
      log.info('another import writes this resource: the job waits in the queue')
      return 'deferred'
    }
    if (error instanceof SourceRejected || error instanceof SourceFormatError) {
      const detail = `${error.message.charAt(0).toUpperCase()}${error.message.slice(1)}.`
      await finish(job, run, log, 'failed', problemBody('unprocessable', detail, 'Import source rejected'))
      return 'failed'
    }
    // A store that does not answer hands the job back (app/jobs/job-thread.ts); one that answers
    // no (the object deleted, access denied) will say so again: the job fails, saying which.
    if (error instanceof StoreError && error.kind !== 'unavailable') {
      const detail = `The source cannot be read from the store (${error.kind}): ${error.message}. Records before it stand; import the rest again.`
      log.warn({ err: error }, 'the source cannot be read from the store')
      await finish(job, run, log, 'failed', problemBody('source_unavailable', detail))
      return 'failed'
    }
    throw error
  } finally {
    control.stop()
  }
}

/** The stop a signal asks for: a cancel ends the job, a shutdown hands it back. */
function stopRequested(run: ImportRun, control: JobControl): Exclude<WriterState, 'go'> | undefined {
  if (control.cancel.signal.aborted) return 'cancelled'
  if (run.signal.aborted) return 'released'
  return undefined
}

async function execute(
  job: ImportJobRow,
  resource: ResourceDescriptor,
  run: ImportRun,
  log: FastifyBaseLogger,
  control: JobControl,
): Promise<RunOutcome> {
  let path = job.source_path
  if (!path) {
    if (!run.download) throw new Error('a URL job needs a downloader')
    const stopping = AbortSignal.any([run.signal, control.cancel.signal])
    try {
      const downloaded = await run.download(job, stopping)
      path = downloaded.path
      job = {
        ...job,
        format: downloaded.format,
        warnings: downloaded.warnings,
        unknown_fields: downloaded.unknownFields.names,
        unknown_fields_more: downloaded.unknownFields.more,
      }
    } catch (error) {
      const stop = stopRequested(run, control)
      if (!stop) throw error
      return stopped(job, run, log, stop)
    }
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
  const unknownFields = new UnknownFields(job.unknown_fields, job.unknown_fields_more)
  const location = locateSource(run.stores, path)
  const resumeFrom = await resumePoint(job, location, format)
  if (resumeFrom) {
    log.info(
      {
        from_byte: resumeFrom.offset,
        checkpoint_record: resumeFrom.records,
        source: location.store.locate(location.key),
      },
      'import resumes at its checkpoint: the source is read from its byte on',
    )
  }
  const splitter = new RecordSplitter({
    format,
    batchRecords: job.batch_size,
    maxRecordBytes: run.maxRecordBytes,
    // A resumed job reads from its checkpoint's byte (a ranged read); one that cannot (gzip, an
    // older checkpoint) reads from the start and passes over its committed records.
    ...(resumeFrom ? { resumeFrom } : { skipRecords: Number(job.checkpoint_record) }),
  })
  let header: string[] | undefined

  const context = {
    job,
    resource,
    sql: run.writeSql,
    owner: run.owner,
    leaseSeconds: run.leaseSeconds,
    maxErrorsPerJob: run.maxErrorsPerJob,
    log,
    signal: run.signal,
    cancel: control.cancel.signal,
    counters,
    onCommitted: (name: string, committed: CommittedBatch) => {
      run.metrics.records(name, format, 'inserted', committed.inserted)
      run.metrics.records(name, format, 'updated', committed.updated)
      run.metrics.records(name, format, 'failed', committed.failed)
      run.metrics.batchStage(name, 'write', committed.seconds)
      run.metrics.batchWritten(name, committed.statement)
    },
    showWaiting: (waiting: JobWaiting | null) => setImportWaiting(run.sql, job.id, run.owner, waiting),
  }
  const writer: BatchWriter = job.dry_run ? new DryRunWriter(context) : new LaneWriter(context)
  const depth = run.validation.parallelism + 1
  const inFlight: { batch: RecordBatch; bytesRead: number; result: Promise<BatchResult> }[] = []

  const dispatch = (batch: RecordBatch, bytesRead: number) => {
    if (format === 'csv' && !header) {
      if (!splitter.header) throw new SourceRejected('the CSV file has no header row')
      const parsed = parseHeader(splitter.header.bytes, resource)
      header = parsed.columns
      unknownFields.add(parsed.unknown)
    }
    const task: BatchTask = {
      resource: resource.module,
      format,
      chunk: batch.chunk,
      starts: batch.starts,
      lengths: Int32Array.from(batch.spans, (span) => span.length),
      problems: Uint8Array.from(batch.spans, (span) => (span.problem ? splitterProblemCodes[span.problem] : 0)),
      header,
      columns: resource.columns,
      nullableColumns: resource.nullableColumns,
      naturalKey: resource.naturalKey,
      maxRecordBytes: run.maxRecordBytes,
    }
    const result = run.validation.validate(task)
    result.catch(() => {}) // awaited in order below; never an unhandled rejection if we stop early
    inFlight.push({ batch, bytesRead, result })
  }

  let bytesCounted = Number(job.bytes_read)
  const writeNext = async (): Promise<RunOutcome | null> => {
    const next = inFlight.shift()
    if (!next) return null
    const result = await next.result
    if (next.bytesRead > bytesCounted) {
      run.metrics.bytesRead(resource.name, format, next.bytesRead - bytesCounted)
      bytesCounted = next.bytesRead
    }
    run.metrics.batchStage(resource.name, 'parse', result.parseMs / 1000)
    run.metrics.batchStage(resource.name, 'validate', result.validateMs / 1000)
    unknownFields.add(result.unknownFields, result.moreUnknownFields)
    for (const warning of splitter.warnings) if (!warnings.includes(warning)) warnings.push(warning)
    const state = await writer.submit(next.batch, result, next.bytesRead, warnings, unknownFields.list)
    if (control.leaseLost) throw new LeaseLost()
    const stop = state === 'go' ? stopRequested(run, control) : state
    return stop ? halt(stop) : null
  }

  /** The job stops before its end: cancelled (committed batches stay) or handed back at shutdown. */
  const halt = async (state: Exclude<WriterState, 'go'>): Promise<RunOutcome> => {
    // The batches in flight find the cancel (or the shutdown) when they record themselves:
    // nothing commits after a cancel was accepted.
    const final = await writer.finish().catch(() => state)
    return stopped(job, run, log, final === 'go' ? state : final, started, processedAtStart)
  }

  let corrupt: SourceCorrupt | undefined
  const source = await openSource(location, resumeFrom?.offset ?? 0)
  try {
    await writer.begin()
    try {
      for await (const chunk of source.bytes) {
        const stop = stopRequested(run, control)
        if (stop) return await halt(stop)
        for (const batch of splitter.push(chunk)) {
          dispatch(batch, source.bytesRead())
          if (inFlight.length >= depth) {
            const ended = await writeNext()
            if (ended) return ended
          }
        }
      }
    } catch (error) {
      corrupt = sourceCorruption(error)
      if (!corrupt) throw error
    }
    // A corrupt source ends where it could be read: the batches already cut are written (their
    // records are whole), the record it was reading is not.
    if (!corrupt) {
      for (const batch of splitter.end()) dispatch(batch, source.bytesRead())
      if (format === 'csv' && !splitter.header) throw new SourceRejected('the CSV file is empty: it has no header row')
    }
    while (inFlight.length) {
      const ended = await writeNext()
      if (ended) return ended
    }
    const state = await writer.finish()
    if (control.leaseLost) throw new LeaseLost()
    if (state !== 'go') return halt(state)
  } finally {
    source.close()
    await writer.close()
  }
  for (const warning of splitter.warnings) if (!warnings.includes(warning)) warnings.push(warning)
  if (corrupt) {
    const detail = `The source cannot be read past byte ${source.bytesRead()} (${corrupt.message}). The ${counters.processed} records before it are imported; fix the file and import the rest again.`
    await finish(job, run, log, 'failed', problemBody('source_corrupt', detail), undefined, started, processedAtStart)
    return 'failed'
  }
  await finish(job, run, log, 'completed', null, source.bytesRead(), started, processedAtStart)
  return 'completed'
}

/**
 * Where a resumed job goes on reading: its checkpoint's byte, line and record count (and a CSV's
 * header, read again from the start), or undefined to read from the start: a first run, a gzip
 * source (it cannot be entered mid-stream), a checkpoint without a byte.
 */
async function resumePoint(
  job: ImportJobRow,
  location: SourceLocation,
  format: ImportFormat,
): Promise<SplitterOptions['resumeFrom']> {
  const records = Number(job.checkpoint_record)
  const offset = Number(job.checkpoint_offset)
  if (records === 0 || offset === 0 || (await isGzip(location))) return undefined
  const point = { offset, line: Number(job.checkpoint_line), records }
  if (format !== 'csv') return point
  const header = await readCsvHeader(location)
  return header
    ? { ...point, header: { span: header.span, bytes: header.bytes }, lineEnding: header.lineEnding }
    : undefined
}

/** Ends a run that was asked to stop: a cancel finishes the job, a shutdown hands it back. */
async function stopped(
  job: ImportJobRow,
  run: ImportRun,
  log: FastifyBaseLogger,
  state: Exclude<WriterState, 'go'>,
  started?: number,
  processedAtStart?: number,
): Promise<RunOutcome> {
  if (state === 'cancelled') {
    // bytes_read stays where the last committed batch left it.
    await finish(job, run, log, 'cancelled', null, undefined, started, processedAtStart)
    return 'cancelled'
  }
  await releaseJob(run.sql, 'import', job.id, run.owner)
  log.info('import handed back at shutdown; it resumes from its checkpoint')
  return 'released'
}

async function finish(
  job: ImportJobRow,
  run: ImportRun,
  log: FastifyBaseLogger,
  status: 'completed' | 'failed' | 'cancelled',
  problem: Record<string, unknown> | null,
  bytesRead?: number,
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
}
