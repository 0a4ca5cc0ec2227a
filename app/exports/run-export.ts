import { PassThrough } from 'node:stream'
import { createGzip } from 'node:zlib'
import type { Logger } from 'pino'
import type { Sql } from '../../db/connection.ts'
import { isDatabaseUnavailable } from '../../db/errors.ts'
import { completeExportJob, type ExportJobRow, exportCopyStatement, failExportJob } from '../../db/exports.ts'
import { releaseJob, renewLease } from '../../db/job-queue.ts'
import { type ResourceDescriptor, resourceOf } from '../../resources/index.ts'
import { problemBody } from '../../schemas/problem.ts'
import { type ObjectStore, STORE_RETRY_MS, StoreError } from '../storage/object-store.ts'
import { copyExport, ExportAborted } from './copy-export.ts'
import { exportQuery } from './export-query.ts'

export interface ExportContext {
  sql: Sql
  /** The resources a job may name (the app's). */
  resources: readonly ResourceDescriptor[]
  /** Another pool, to cancel the export's statement (see copyExport). */
  control: Sql
  owner: string
  leaseSeconds: number
  /** Where export files go: the exports' store. */
  store: ObjectStore
  ttlSeconds: number
  gzipLevel: number
  escapeFormulas: boolean
  log: Logger
  /** Aborts on shutdown: the job goes back to the queue and starts again elsewhere. */
  signal: AbortSignal
  /** A finished file: its rows and bytes, for the metrics. */
  finished(job: ExportJobRow, rows: number, bytes: number, seconds: number): void
}

export type ExportOutcome = 'completed' | 'failed' | 'released' | 'lost'

/**
 * Runs one async export: COPY from one snapshot into the exports' store, hashing the bytes as they
 * are written (app/storage/: a file renamed into place once flushed, or a multipart upload
 * completed and its size checked); the job is then completed with its rows, bytes and SHA-256.
 * The lease is renewed (with the progress) while the file is written; a job whose lease is lost
 * stops, and its partial file or upload is removed. An export has no checkpoint: a job taken over
 * starts again.
 */
export async function runExport(job: ExportJobRow, context: ExportContext): Promise<ExportOutcome> {
  const { sql, owner, leaseSeconds, log } = context
  const jobLog = log.child({ job_id: job.id, resource: job.resource })
  const gzip = job.compression === 'gzip'
  const fileName = `${job.id}.${job.format}${gzip ? '.gz' : ''}`
  const query = exportQuery(
    resourceOf(context.resources, job.resource),
    { format: job.format, fields: job.fields, filters: job.filters },
    context.escapeFormulas,
  )
  // What an earlier attempt's owner (one that died mid-export) left goes first. Should that
  // owner still be writing, its lease-fenced updates change nothing.
  if (job.attempts > 1) {
    await context.store
      .abandon(fileName)
      .catch((error) => jobLog.warn({ err: error }, 'removing a partial file failed'))
  }

  const stopped = new AbortController()
  const onShutdown = () => stopped.abort()
  if (context.signal.aborted) stopped.abort()
  else context.signal.addEventListener('abort', onShutdown, { once: true })

  let progress: { readonly rows: number } = { rows: 0 }
  let bytesWritten = 0
  const head = gzip ? createGzip({ level: context.gzipLevel }) : new PassThrough()
  // Another owner still writing the same key (it lost its lease) cannot publish a mix: a file is
  // renamed into place whole, an upload completed whole; the last one complete wins, and both hold
  // the same snapshot's rows.
  const written = context.store.write(fileName, head, {
    signal: stopped.signal,
    progress: (bytes) => {
      bytesWritten = bytes
    },
  })
  // Awaited below; until then a failure (the store refuses the write) must not be an unhandled
  // rejection, which would end the job thread and every job in it.
  written.catch(() => {})

  let leaseLost = false
  const heartbeat = setInterval(
    () => {
      renewLease(sql, 'export', job.id, owner, leaseSeconds, { rows: progress.rows, bytes: bytesWritten })
        .then(({ owned }) => {
          if (!owned) {
            leaseLost = true
            stopped.abort()
          }
        })
        .catch((error) => jobLog.warn({ err: error }, 'renewing the export lease failed'))
    },
    Math.max(500, (leaseSeconds * 1000) / 3),
  )
  const begun = performance.now()
  try {
    const result = await copyExport(sql, exportCopyStatement(query), head, {
      format: job.format,
      control: context.control,
      signal: stopped.signal,
      onStart: (counts) => {
        progress = counts
      },
    })
    const { rows } = result
    head.end()
    const { size: bytes, sha256 } = await written
    clearInterval(heartbeat)
    const completed = await completeExportJob(sql, job.id, owner, {
      rows,
      bytes,
      sha256,
      fileName,
      ttlSeconds: context.ttlSeconds,
    })
    if (!completed) {
      // Another process took the job over meanwhile: its file (same name) is the one that counts.
      jobLog.warn('export lease lost at completion; the new owner writes the file again')
      return 'lost'
    }
    const seconds = (performance.now() - begun) / 1000
    context.finished(job, rows, bytes, seconds)
    jobLog.info(
      { rows, bytes, seconds: Math.round(seconds * 1000) / 1000, rows_per_second: Math.round(rows / seconds) },
      'export finished',
    )
    return 'completed'
  } catch (error) {
    clearInterval(heartbeat)
    head.destroy()
    stopped.abort() // the store's write stops too, and removes what it wrote
    const writeFailure = await written.then(
      () => undefined,
      (failure: NodeJS.ErrnoException) => failure,
    )
    if (error instanceof StoreError || writeFailure instanceof StoreError) {
      // The store did not take the file (away, or refusing): the export runs again once its
      // lease expires, on whichever instance claims it.
      jobLog.warn({ err: writeFailure ?? error }, 'the store did not take the export file; it starts again later')
      await releaseJob(sql, 'export', job.id, owner, STORE_RETRY_MS).catch(() => {})
      return 'released'
    }
    if (error instanceof ExportAborted) {
      if (leaseLost) {
        jobLog.warn('export lease lost: another process runs the job')
        return 'lost'
      }
      if (context.signal.aborted) {
        await releaseJob(sql, 'export', job.id, owner).catch(() => {})
        jobLog.info('export stopped by shutdown; back in the queue')
        return 'released'
      }
      // Neither a shutdown nor a lost lease: the file stopped taking bytes (a full disk, a
      // directory gone). Another run would meet the same: the job fails, saying so.
      jobLog.error({ err: writeFailure ?? error }, 'the export file could not be written')
      const reason = writeFailure?.code ?? 'the file stopped taking bytes'
      await failExportJob(
        sql,
        job.id,
        owner,
        problemBody('internal_error', `The export file could not be written (${reason}); the log has the details.`),
      ).catch(() => {})
      return 'failed'
    }
    if (isDatabaseUnavailable(error)) {
      jobLog.warn({ err: error }, 'database unavailable: the export starts again once its lease expires')
      return 'lost'
    }
    jobLog.error({ err: error }, 'export failed')
    await failExportJob(
      sql,
      job.id,
      owner,
      problemBody('internal_error', 'The export stopped on an unexpected error; the log has the details.'),
    ).catch(() => {})
    return 'failed'
  } finally {
    context.signal.removeEventListener('abort', onShutdown)
  }
}
