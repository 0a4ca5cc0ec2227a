import { type ColumnType, type Generated, sql as kyselySql, type Selectable } from 'kysely'
import type { Sql } from './connection.ts'
import { completeIdempotencyKey, type HeldKey } from './idempotency.ts'
import { JOB_CHANNEL, notifyJobRunners } from './job-queue.ts'
import { createdBefore, cursorCreatedAt, type JobCursor } from './jobs.ts'
import { inTransaction, query, run, runFirst, runOne } from './query.ts'

// Import jobs and their per-record errors (db/migrations/0002_import_jobs.ts). The job runner's
// statements (claim, lease, batch commit) are fenced by `lease_owner`: a process that lost its
// lease can never write to the job again.

export interface ImportJobsTable {
  id: Generated<string>
  resource: string
  format: 'csv' | 'ndjson' | 'json' | null
  status: ColumnType<ImportStatus, ImportStatus | undefined, ImportStatus>
  dry_run: boolean
  source_type: 'upload' | 'url'
  source_filename: string | null
  source_url: string | null
  source_path: string | null
  source_size_bytes: ColumnType<string | null, number | null | undefined, number | null>
  source_sha256: string | null
  batch_size: number
  created_at: ColumnType<Date, never, never>
  started_at: ColumnType<Date | null, never, Date | null>
  finished_at: ColumnType<Date | null, never, Date | null>
  processed: ColumnType<string, never, never>
  inserted: ColumnType<string, never, never>
  updated: ColumnType<string, never, never>
  failed: ColumnType<string, never, never>
  errors_stored: ColumnType<string, never, never>
  bytes_read: ColumnType<string, never, never>
  bytes_total: ColumnType<string | null, number | null | undefined, number | null>
  checkpoint_record: ColumnType<string, never, never>
  checkpoint_line: ColumnType<string, never, never>
  checkpoint_offset: ColumnType<string, never, never>
  warnings: ColumnType<string[], string[] | undefined, string[]>
  error: ColumnType<Record<string, unknown> | null, never, Record<string, unknown> | null>
  cancel_requested: ColumnType<boolean, never, boolean>
  lease_owner: ColumnType<string | null, never, string | null>
  lease_expires_at: ColumnType<Date | null, never, Date | null>
  attempts: ColumnType<number, never, never>
  idempotency_key: string | null
  /** The first unknown field names met (app/imports/unknown-fields.ts), and whether there were more. */
  unknown_fields: ColumnType<string[], string[] | undefined, string[]>
  unknown_fields_more: ColumnType<boolean, boolean | undefined, boolean>
  /** Why a running job is not advancing, while it waits (see JobWaiting); null otherwise. */
  waiting: ColumnType<JobWaiting | null, never, never>
  /** A job handed back to wait is not claimed before this. */
  not_before: ColumnType<Date | null, never, never>
}

/** Why a job waits: shown in its progress (the API's `progress.waiting`). */
export interface JobWaiting {
  reason: 'resource_busy' | 'row_locks'
  detail: string
  /** ISO 8601. */
  since: string
}

export interface ImportErrorsTable {
  job_id: string
  record: string
  seq: number
  line: string
  record_id: string | null
  field: string | null
  code: string
  message: string
  value: string | null
  byte_offset: string
  byte_length: string
}

export type ImportStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled'
export type ImportJobRow = Selectable<ImportJobsTable>

/**
 * A job as the API reads it: with `blocked_by`, the running import of the same resource that a
 * queued job waits for (imports of one resource write one at a time), when there is one.
 */
export type ImportJobWithBlocker = ImportJobRow & { blocked_by?: string | null }

/** The running import that a queued job of the same resource waits for: a subquery on import_jobs. */
const BLOCKED_BY = `(
  select blocker.id from import_jobs blocker
  where import_jobs.status = 'queued' and blocker.resource = import_jobs.resource
    and blocker.status = 'running' and blocker.id <> import_jobs.id
  order by blocker.started_at limit 1)`
const blockedBy = kyselySql.raw<string | null>(BLOCKED_BY).as('blocked_by')
export type ImportErrorRow = Selectable<ImportErrorsTable>

export const finishedStatuses: readonly ImportStatus[] = ['completed', 'failed', 'cancelled']

export interface NewImportJob {
  resource: string
  format: 'csv' | 'ndjson' | 'json' | null
  dry_run: boolean
  source_type: 'upload' | 'url'
  source_filename?: string | null
  source_url?: string | null
  source_path?: string | null
  source_size_bytes?: number | null
  source_sha256?: string | null
  bytes_total?: number | null
  batch_size: number
  warnings?: string[]
  unknown_fields?: string[]
  unknown_fields_more?: boolean
  idempotency_key?: string | null
}

/**
 * Inserts a queued job and wakes the runners (NOTIFY import_jobs). With an idempotency key, the
 * key is completed in the same transaction: a job never exists without its key, nor a key
 * without its job.
 */
export async function insertImportJob(
  sql: Sql,
  job: NewImportJob,
  idempotency?: HeldKey & { fingerprint: string },
): Promise<ImportJobRow> {
  return inTransaction(sql, async (tx) => {
    const row = await runOne(tx, query.insertInto('import_jobs').values(job).returningAll())
    if (idempotency) await completeIdempotencyKey(tx, idempotency, row.id)
    await notifyJobRunners(tx, row.id)
    return row
  })
}

export async function findImportJob(sql: Sql, id: string): Promise<ImportJobWithBlocker | undefined> {
  return runFirst(sql, query.selectFrom('import_jobs').selectAll().select(blockedBy).where('id', '=', id))
}

export interface ImportJobFilter {
  status?: ImportStatus
  resource?: string
  /** Only jobs created before this (created_at, id): the cursor of the previous page. */
  before?: JobCursor
  limit: number
}

/**
 * A listed job, with its created_at to the microsecond as text (ISO 8601, UTC) for a cursor, and
 * its first errors.
 */
export type ListedImportJob = ImportJobWithBlocker & { cursor_created_at: string; first_errors: ImportErrorRow[] }

/** The first `limit` errors of the row's job as one JSON array (record order), beside the row. */
function firstErrors(limit: number) {
  return kyselySql<ImportErrorRow[]>`coalesce((
    select json_agg(e order by e.record, e.seq)
    from (select * from import_errors where job_id = import_jobs.id order by record, seq limit ${limit}) e
  ), '[]')`.as('first_errors')
}

/**
 * Newest first, each job with its first `errors` errors, in one query; `before` continues after
 * the last job of a previous page.
 */
export async function listImportJobs(sql: Sql, filter: ImportJobFilter, errors: number): Promise<ListedImportJob[]> {
  let listed = query
    .selectFrom('import_jobs')
    .selectAll()
    .select([cursorCreatedAt, blockedBy, firstErrors(errors)])
  if (filter.status) listed = listed.where('status', '=', filter.status)
  if (filter.resource) listed = listed.where('resource', '=', filter.resource)
  if (filter.before) listed = listed.where(createdBefore(filter.before))
  return run(sql, listed.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(filter.limit))
}

/**
 * A job with its first `limit` errors, in one round trip (the status endpoint is polled while
 * imports keep the database busy).
 */
export async function findImportJobWithErrors(
  sql: Sql,
  id: string,
  limit: number,
): Promise<{ job: ImportJobWithBlocker; errors: ImportErrorRow[] } | undefined> {
  const [row] = await sql<(ImportJobWithBlocker & { first_errors: ImportErrorRow[] })[]>`
    select import_jobs.*, coalesce((
      select json_agg(e order by e.record, e.seq)
      from (select * from import_errors where job_id = import_jobs.id order by record, seq limit ${limit}) e
    ), '[]') as first_errors, ${sql.unsafe(BLOCKED_BY)} as blocked_by
    from import_jobs where import_jobs.id = ${id}`
  if (!row) return undefined
  const { first_errors: errors, ...job } = row
  return { job, errors }
}

/** The first `limit` errors of a job, in record order. */
export async function firstImportErrors(sql: Sql, jobId: string, limit: number): Promise<ImportErrorRow[]> {
  return run(
    sql,
    query
      .selectFrom('import_errors')
      .selectAll()
      .where('job_id', '=', jobId)
      .orderBy('record')
      .orderBy('seq')
      .limit(limit),
  )
}

/** Every error of a job in record order, read in pages of `pageSize` through a cursor. */
export function importErrorPages(sql: Sql, jobId: string, pageSize = 1000): AsyncIterable<ImportErrorRow[]> {
  return sql<ImportErrorRow[]>`
    select * from import_errors where job_id = ${jobId} order by record, seq`.cursor(pageSize)
}

/** Byte ranges of the failed records (one per record), in source order. */
export function failedRecordRanges(
  sql: Sql,
  jobId: string,
  pageSize = 1000,
): AsyncIterable<{ byte_offset: string; byte_length: string }[]> {
  return sql<{ byte_offset: string; byte_length: string }[]>`
    select distinct on (record) byte_offset, byte_length from import_errors
    where job_id = ${jobId} order by record`.cursor(pageSize)
}

/** Whether the job is still this process's, and whether a cancel was asked: a read, no lock. */
export async function importJobControl(
  sql: Sql,
  jobId: string,
  owner: string,
): Promise<{ owned: boolean; cancelRequested: boolean }> {
  const [row] = await sql<{ owned: boolean; cancel_requested: boolean }[]>`
    select lease_owner = ${owner} and status = 'running' as owned, cancel_requested
    from import_jobs where id = ${jobId}`
  return { owned: row?.owned ?? false, cancelRequested: row?.cancel_requested ?? false }
}

/** Shows why a running job does not advance (`progress.waiting`), or clears it with null. */
export async function setImportWaiting(sql: Sql, jobId: string, owner: string, waiting: JobWaiting | null) {
  await sql`
    update import_jobs set waiting = ${waiting ? sql.json(waiting as never) : null}
    where id = ${jobId} and lease_owner = ${owner} and status = 'running'`
}

export interface BatchCommit {
  jobId: string
  owner: string
  leaseSeconds: number
  processed: number
  inserted: number
  updated: number
  failed: number
  /** The batch's error rows as a JSON array (see import_errors), and how many there are. */
  errorsJson: string
  errorCount: number
  bytesRead: number
  checkpointRecord: number
  checkpointLine: number
  checkpointOffset: number
  warnings: string[]
  unknownFields: { names: string[]; more: boolean }
}

/**
 * Records a batch: its error rows, the counters, the checkpoint and a renewed lease, in one
 * statement. Inside the batch's transaction, it commits with the batch's rows or not at all.
 * It records nothing for a job this process no longer owns, or whose cancel was asked: the
 * cancel request locks the job's row, so a batch either commits before the cancel is accepted,
 * or finds it here and is rolled back (a cancelled job writes nothing after the cancel).
 * @returns `committed`, or why the caller must roll back: `cancelled`, `lost` (the lease)
 */
export async function commitBatch(sql: Sql, batch: BatchCommit): Promise<'committed' | 'cancelled' | 'lost'> {
  const [row] = await sql<{ recorded: boolean }[]>`
    with recorded as (
      update import_jobs set
        processed = processed + ${batch.processed}, inserted = inserted + ${batch.inserted},
        updated = updated + ${batch.updated}, failed = failed + ${batch.failed},
        errors_stored = errors_stored + ${batch.errorCount},
        bytes_read = ${batch.bytesRead}, checkpoint_record = ${batch.checkpointRecord},
        checkpoint_line = ${batch.checkpointLine}, checkpoint_offset = ${batch.checkpointOffset},
        warnings = ${batch.warnings}::text[], unknown_fields = ${batch.unknownFields.names}::text[],
        unknown_fields_more = ${batch.unknownFields.more}, waiting = null,
        lease_expires_at = now() + make_interval(secs => ${batch.leaseSeconds})
      where id = ${batch.jobId} and lease_owner = ${batch.owner} and status = 'running' and not cancel_requested
      returning id
    ), stored as (
      insert into import_errors (job_id, record, seq, line, record_id, field, code, message, value, byte_offset, byte_length)
      select recorded.id, e.record, e.seq, e.line, e.record_id, e.field, e.code, e.message, e.value, e.byte_offset, e.byte_length
      from recorded, jsonb_to_recordset(${batch.errorsJson}::text::jsonb) as e(record bigint, seq int, line bigint,
        record_id text, field text, code text, message text, value text, byte_offset bigint, byte_length bigint)
      returning 1
    )
    select exists (select 1 from recorded) as recorded`
  if (row?.recorded) return 'committed'
  // A statement of its own: it sees what made the update skip the row (the statement above reads
  // a snapshot taken before a concurrent cancel committed).
  const control = await importJobControl(sql, batch.jobId, batch.owner)
  return control.owned && control.cancelRequested ? 'cancelled' : 'lost'
}

/**
 * Ends a job this process owns: completed, failed (with a problem) or cancelled. Wakes the
 * runners: an import of the same resource may have been waiting for this one.
 */
export async function finishImportJob(
  sql: Sql,
  jobId: string,
  owner: string,
  status: 'completed' | 'failed' | 'cancelled',
  error: Record<string, unknown> | null = null,
  bytesRead?: number,
): Promise<ImportJobRow | undefined> {
  const [row] = await sql<ImportJobRow[]>`
    with finished as (
      update import_jobs set status = ${status}, finished_at = now(), error = ${error ? sql.json(error as never) : null},
        bytes_read = coalesce(${bytesRead ?? null}::bigint, bytes_read),
        lease_owner = null, lease_expires_at = null, waiting = null
      where id = ${jobId} and lease_owner = ${owner} and status = 'running'
      returning *
    )
    select finished.*, pg_notify(${JOB_CHANNEL}, finished.id::text) from finished`
  return row
}

/**
 * Hands a job back to wait for another import of its resource (which holds the write lock):
 * not claimed again for `delayMs`, and the run does not count as an attempt.
 */
export async function deferImportJob(sql: Sql, jobId: string, owner: string, delayMs: number): Promise<void> {
  await sql`
    update import_jobs set status = 'queued', lease_owner = null, lease_expires_at = null,
      attempts = attempts - 1, waiting = null, not_before = now() + make_interval(secs => ${delayMs / 1000})
    where id = ${jobId} and lease_owner = ${owner} and status = 'running'`
}

/** A dry run cannot resume (its writes were rolled back): it starts over. */
export async function restartImportJob(sql: Sql, jobId: string, owner: string): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`delete from import_errors where job_id = ${jobId}`
    await tx`
      update import_jobs set processed = 0, inserted = 0, updated = 0, failed = 0, errors_stored = 0,
        bytes_read = 0, checkpoint_record = 0, checkpoint_line = 0, checkpoint_offset = 0
      where id = ${jobId} and lease_owner = ${owner}`
  })
}

/** Sets the source of a URL job once downloaded. */
export async function recordDownloadedSource(
  sql: Sql,
  jobId: string,
  owner: string,
  source: {
    path: string
    sizeBytes: number
    sha256: string | null
    format: 'csv' | 'ndjson' | 'json'
    warnings: string[]
    unknownFields: { names: string[]; more: boolean }
  },
): Promise<void> {
  await sql`
    update import_jobs set source_path = ${source.path}, source_size_bytes = ${source.sizeBytes},
      source_sha256 = ${source.sha256}, bytes_total = ${source.sizeBytes}, format = ${source.format},
      warnings = ${source.warnings}::text[], unknown_fields = ${source.unknownFields.names}::text[],
      unknown_fields_more = ${source.unknownFields.more}
    where id = ${jobId} and lease_owner = ${owner}`
}

/**
 * Asks a job to stop: a queued job is cancelled at once; a running one stops at its next batch
 * boundary (committed batches stay). Returns the job as it is now, and whether it was already
 * done before this request (completed, failed or cancelled), or undefined when unknown.
 */
export async function requestImportCancel(
  sql: Sql,
  id: string,
): Promise<{ job: ImportJobRow; alreadyDone: boolean } | undefined> {
  return inTransaction(sql, async (tx) => {
    const job = await runFirst(tx, query.selectFrom('import_jobs').selectAll().where('id', '=', id).forUpdate())
    if (!job) return undefined
    if (job.status === 'queued') {
      const cancelled = await runOne(
        tx,
        query
          .updateTable('import_jobs')
          .set({ status: 'cancelled', finished_at: new Date(), cancel_requested: true })
          .where('id', '=', id)
          .returningAll(),
      )
      return { job: cancelled, alreadyDone: false }
    }
    if (job.status === 'running') {
      const stopping = await runOne(
        tx,
        query.updateTable('import_jobs').set({ cancel_requested: true }).where('id', '=', id).returningAll(),
      )
      return { job: stopping, alreadyDone: false }
    }
    return { job, alreadyDone: true }
  })
}

/** Which of these keys are the sources of import jobs (the rest are orphans). */
export async function referencedImportSources(sql: Sql, keys: string[]): Promise<Set<string>> {
  const rows = await sql<{ source_path: string }[]>`
    select source_path from import_jobs where source_path = any(${keys}::text[])`
  return new Set(rows.map((row) => row.source_path))
}
