import type { FastifyBaseLogger } from 'fastify'
import type Tinypool from 'tinypool'
import type { Sql } from '../../db/connection.ts'
import { finishImportJob, type ImportJobRow, releaseImportJob, renewLease, restartImportJob } from '../../db/imports.ts'
import { problemBody } from '../../schemas/problem.ts'
// Types only: the worker module itself runs in the worker threads, never here.
import type { BatchResult, BatchTask } from '../workers/import-batch.ts'
import { type BatchWriter, DryRunWriter, LaneWriter, LeaseLost, type WriterState } from './batch-writer.ts'
import {
  type ImportFormat,
  type RecordBatch,
  RecordSplitter,
  SourceFormatError,
  splitterProblemCodes,
} from './record-splitter.ts'
import { type ImportResource, importResources } from './resources.ts'
import { openSource, parseHeader, SourceRejected, unknownFieldsWarning } from './source.ts'

// Runs one claimed import job from its checkpoint to its end, in the import thread
// (app/jobs/job-thread.ts). It reads and splits the source; the validation threads parse and
// validate batches (ahead of the writer); the writer (app/imports/batch-writer.ts) applies the
// batches in file order, each in one transaction with the job's counters, checkpoint and error
// rows, so that a crash at any point leaves a consistent job that resumes after its last
// committed batch.

export interface ImportMetrics {
  records(resource: string, outcome: 'inserted' | 'updated' | 'failed', count: number): void
  batchStage(resource: string, stage: 'parse' | 'validate' | 'write', seconds: number): void
  bytesRead(resource: string, bytes: number): void
}

export interface ImportRun {
  /** The job's bookkeeping (leases, finishing). */
  sql: Sql
  /** Connections for the batches: each job reserves up to two while it writes. */
  writeSql: Sql
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

interface Counters {
  processed: number
  inserted: number
  updated: number
  failed: number
  errorsStored: number
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
      await finish(job, run, log, 'failed', problemBody('unprocessable', detail, 'Import source rejected'))
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

  const context = {
    job,
    resource,
    sql: run.writeSql,
    owner: run.owner,
    leaseSeconds: run.leaseSeconds,
    maxErrorsPerJob: run.maxErrorsPerJob,
    log,
    signal: run.signal,
    counters,
    onCommitted: (name: string, committed: { inserted: number; updated: number; failed: number; seconds: number }) => {
      run.metrics.records(name, 'inserted', committed.inserted)
      run.metrics.records(name, 'updated', committed.updated)
      run.metrics.records(name, 'failed', committed.failed)
      run.metrics.batchStage(name, 'write', committed.seconds)
    },
  }
  const writer: BatchWriter = job.dry_run ? new DryRunWriter(context) : new LaneWriter(context)
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
      problems: Uint8Array.from(batch.spans, (span) => (span.problem ? splitterProblemCodes[span.problem] : 0)),
      header,
      columns: resource.columns,
      nullableColumns: resource.nullableColumns,
      naturalKey: resource.naturalKey,
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
    const state = await writer.submit(next.batch, result, next.bytesRead, warnings)
    if (isLeaseLost()) throw new LeaseLost()
    return state === 'go' ? null : stop(state)
  }

  /** The job stops before its end: cancelled (committed batches stay) or handed back at shutdown. */
  const stop = async (state: Exclude<WriterState, 'go'>): Promise<RunOutcome> => {
    await writer.finish().catch(() => {})
    if (state === 'cancelled') {
      // bytes_read stays where the last committed batch left it.
      await finish(job, run, log, 'cancelled', null, undefined, started, processedAtStart)
      return 'cancelled'
    }
    await releaseImportJob(run.sql, job.id, run.owner)
    log.info({ checkpoint_record: counters.processed }, 'import released at shutdown; it resumes from its checkpoint')
    return 'released'
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
    const state = await writer.finish()
    if (isLeaseLost()) throw new LeaseLost()
    if (state !== 'go') return stop(state)
  } finally {
    source.close()
    await writer.close()
  }
  for (const warning of splitter.warnings) if (!warnings.includes(warning)) warnings.push(warning)
  await finish(job, run, log, 'completed', null, source.bytesRead(), started, processedAtStart)
  return 'completed'
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
