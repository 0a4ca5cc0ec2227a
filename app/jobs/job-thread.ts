import { parentPort, workerData } from 'node:worker_threads'
import { pino } from 'pino'
import { connect } from '../../db/connection.ts'
import { isDatabaseUnavailable } from '../../db/errors.ts'
import type { ExportJobRow } from '../../db/exports.ts'
import { deferImportJob, finishImportJob, type ImportJobRow, recordDownloadedSource } from '../../db/imports.ts'
import { releaseJob } from '../../db/job-queue.ts'
import { loadResources, resourceOf } from '../../resources/index.ts'
import { problemBody } from '../../schemas/problem.ts'
import { type ExportOutcome, runExport } from '../exports/run-export.ts'
import { downloadSource } from '../imports/download.ts'
import { type ImportMetrics, type RunOutcome, runImport } from '../imports/run-import.ts'
import { inspectSource, locateSource, SourceRejected } from '../imports/source.ts'
import { UnknownFields } from '../imports/unknown-fields.ts'
import {
  isStoreUnavailable,
  STORE_RETRY_MS,
  type StoreErrorKind,
  type StoreOperation,
} from '../storage/object-store.ts'
import { openStores, parseS3Url, type StoreSettings } from '../storage/stores.ts'
import { batchValidation } from '../workers/batch-validation.ts'
import { lowerThreadPriority } from '../workers/thread-priority.ts'

// The jobs of a process (imports and async exports) run in this thread, not on the main thread:
// reading and splitting sources, validating batches (app/workers/batch-validation.ts), driving
// the database writes and hashing export files allocate a lot, and their garbage collection and
// callbacks would delay the HTTP requests (a client polling its job's status) that the main
// thread serves. The main thread claims the jobs and sends them here (plugins/jobs.ts); this
// thread reports back how each ended, and its metrics.

/** What plugins/jobs.ts passes when it starts the thread. */
export interface JobThreadData {
  databaseUrl: string
  owner: string
  /** The app's resources, as their descriptors' modules (resources/index.ts, loadResources). */
  resourceModules: string[]
  logLevel: string
  /** Where sources and export files are (app/storage/stores.ts). */
  storage: StoreSettings
  workerPoolSize: number
  /** Validation threads; 0: the job thread validates its batches itself (app/workers/batch-validation.ts). */
  importThreads: number
  leaseSeconds: number
  maxRecordBytes: number
  maxErrorsPerJob: number
  connectTimeoutSeconds: number
  download: { maxBytes: number; timeoutMs: number; maxRedirects: number; allowPrivate: boolean }
  exportTtlSeconds: number
  exportGzipLevel: number
  exportEscapeFormulas: boolean
  /** Fault injection for tests (plugins/jobs.ts, JobFaults): exit when an import of this file starts. */
  exitOnSourceFilename?: string
  /** Node.js options of this thread and its validation threads (AppOptions.threadExecArgv); unset: inherited. */
  execArgv?: string[]
}

export type ToJobThread =
  | { type: 'import'; job: ImportJobRow }
  | { type: 'export'; job: ExportJobRow }
  | { type: 'stop' }
  | { type: 'close' }

export type FromJobThread =
  | { type: 'finished'; jobId: string; outcome: RunOutcome | ExportOutcome }
  | { type: 'records'; resource: string; format: string; outcome: 'inserted' | 'updated' | 'failed'; count: number }
  | { type: 'stage'; resource: string; stage: 'parse' | 'validate' | 'write'; seconds: number }
  | { type: 'batch'; resource: string; statement: 'insert_first' | 'upsert' }
  | { type: 'bytes'; resource: string; format: string; bytes: number }
  | { type: 'exported'; resource: string; format: string; rows: number; bytes: number; seconds: number }
  | { type: 'store'; operation: StoreOperation; seconds: number; outcome: 'ok' | StoreErrorKind; bytes?: number }
  | { type: 'ready' }
  | { type: 'closed' }

const settings = workerData as JobThreadData
const port = parentPort as NonNullable<typeof parentPort>
const post = (message: FromJobThread) => port.postMessage(message)

// Below the main thread, above the validation threads (app/workers/validation-thread.ts).
lowerThreadPriority(5)

const resources = await loadResources(settings.resourceModules)
const log = pino({ level: settings.logLevel, timestamp: pino.stdTimeFunctions.isoTime })
const bookkeeping = connect(settings.databaseUrl, {
  max: settings.workerPoolSize + 2,
  connectTimeoutSeconds: settings.connectTimeoutSeconds,
  applicationName: 'bulk-io jobs',
})
// Batches write on connections of their own: two per running job (app/imports/batch-writer.ts).
const writes = connect(settings.databaseUrl, {
  max: settings.workerPoolSize * 2 + 1,
  connectTimeoutSeconds: settings.connectTimeoutSeconds,
  applicationName: 'bulk-io import',
})
const validation = batchValidation(settings.importThreads, settings.execArgv)
const stores = openStores(settings.storage, (operation, seconds, outcome, bytes) =>
  post({ type: 'store', operation, seconds, outcome, bytes }),
)

const stopping = new AbortController()
const running = new Set<Promise<void>>()

const metrics: ImportMetrics = {
  records: (resource, format, outcome, count) => count && post({ type: 'records', resource, format, outcome, count }),
  batchStage: (resource, stage, seconds) => post({ type: 'stage', resource, stage, seconds }),
  bytesRead: (resource, format, bytes) => post({ type: 'bytes', resource, format, bytes }),
  batchWritten: (resource, statement) => post({ type: 'batch', resource, statement }),
}

/**
 * A URL job's source: fetched into the imports' store once (a resumed job reuses it), or, for a
 * `s3://bucket/key` URL, read where it is.
 */
async function download(job: ImportJobRow, signal: AbortSignal) {
  const url = job.source_url as string
  const object = parseS3Url(url)
  const fetched = object
    ? await stores
        .bucket(object.bucket)
        .stat(object.key)
        .then((found) => {
          if (!found) throw new SourceRejected(`there is no object ${url}`)
          return { path: url, sizeBytes: found.size, sha256: null, contentType: null }
        })
    : await downloadSource(url, stores.imports, `${job.id}.download`, settings.download, signal)
  const inspection = await inspectSource(locateSource(stores, fetched.path), resourceOf(resources, job.resource), {
    declared: job.format ?? undefined,
    filename: object ? object.key : new URL(url).pathname,
    contentType: fetched.contentType,
  })
  const source = {
    ...fetched,
    format: inspection.format,
    warnings: inspection.warnings,
    unknownFields: UnknownFields.listOf(inspection.unknownFields),
  }
  await recordDownloadedSource(bookkeeping.sql, job.id, settings.owner, source)
  return source
}

/**
 * Hands a job back after its database went away, once the database answers again (within the
 * lease): another run resumes it at once, without counting an attempt. False when it could not.
 */
async function releaseWhenBack(jobId: string, release: (sql: typeof bookkeeping.sql) => Promise<void>) {
  const deadline = Date.now() + settings.leaseSeconds * 1000
  for (let delay = 100; Date.now() + delay < deadline; delay = Math.min(delay * 2, 2000)) {
    await new Promise((resolve) => setTimeout(resolve, delay))
    try {
      await release(bookkeeping.sql)
      return true
    } catch (error) {
      if (!isDatabaseUnavailable(error)) {
        log.warn({ err: error, job_id: jobId }, 'handing the job back failed')
        return false
      }
    }
  }
  return false
}

async function runImportJob(job: ImportJobRow): Promise<void> {
  const jobLog = log.child({ job_id: job.id, resource: job.resource })
  if (settings.exitOnSourceFilename !== undefined && job.source_filename === settings.exitOnSourceFilename) {
    process.exit(70) // a fault injected by a test: in a worker thread, this ends the thread only
  }
  validation.warmUp(settings.resourceModules)
  let outcome: RunOutcome = 'lost'
  try {
    outcome = await runImport(job, {
      sql: bookkeeping.sql,
      writeSql: writes.sql,
      validation,
      resources,
      owner: settings.owner,
      leaseSeconds: settings.leaseSeconds,
      maxRecordBytes: settings.maxRecordBytes,
      maxErrorsPerJob: settings.maxErrorsPerJob,
      log,
      metrics,
      signal: stopping.signal,
      stores,
      download,
    })
  } catch (error) {
    if (isDatabaseUnavailable(error)) {
      jobLog.warn({ err: error }, 'database unavailable: the job goes back to the queue once it answers')
      const released = await releaseWhenBack(job.id, (sql) => releaseJob(sql, 'import', job.id, settings.owner))
      outcome = released ? 'released' : 'lost'
    } else if (isStoreUnavailable(error)) {
      // Its checkpoint stands: the job resumes from it once the store answers again.
      jobLog.warn({ err: error }, 'the store is unavailable: the job goes back to the queue and resumes later')
      outcome = await deferImportJob(bookkeeping.sql, job.id, settings.owner, STORE_RETRY_MS).then(
        () => 'deferred' as const,
        () => 'lost' as const,
      )
    } else {
      jobLog.error({ err: error }, 'import failed unexpectedly')
      const problem = problemBody(
        'internal_error',
        'The import stopped on an unexpected error; the log has the details.',
      )
      await finishImportJob(bookkeeping.sql, job.id, settings.owner, 'failed', problem).catch(() => {})
      outcome = 'failed'
    }
  }
  post({ type: 'finished', jobId: job.id, outcome })
}

async function runExportJob(job: ExportJobRow): Promise<void> {
  let outcome: ExportOutcome = 'lost'
  try {
    outcome = await runExport(job, {
      sql: bookkeeping.sql,
      resources,
      control: writes.sql,
      owner: settings.owner,
      leaseSeconds: settings.leaseSeconds,
      store: stores.exports,
      ttlSeconds: settings.exportTtlSeconds,
      gzipLevel: settings.exportGzipLevel,
      escapeFormulas: settings.exportEscapeFormulas,
      log,
      signal: stopping.signal,
      finished: (finishedJob, rows, bytes, seconds) =>
        post({ type: 'exported', resource: finishedJob.resource, format: finishedJob.format, rows, bytes, seconds }),
    })
  } catch (error) {
    log.error({ err: error, job_id: job.id }, 'export failed unexpectedly')
  }
  post({ type: 'finished', jobId: job.id, outcome })
}

port.on('message', (message: ToJobThread) => {
  if (message.type === 'import' || message.type === 'export') {
    const done = (message.type === 'import' ? runImportJob(message.job) : runExportJob(message.job)).finally(() =>
      running.delete(done),
    )
    running.add(done)
  } else if (message.type === 'stop') {
    stopping.abort()
  } else if (message.type === 'close') {
    stopping.abort()
    void (async () => {
      await Promise.allSettled([...running])
      await validation.close()
      await Promise.allSettled([bookkeeping.close(), writes.close()])
      stores.close()
      post({ type: 'closed' })
      port.close()
    })()
  }
})

// Loaded and listening: the main thread starts claiming jobs.
post({ type: 'ready' })
