import { type ColumnType, type Generated, sql as kyselySql, type RawBuilder, type Selectable } from 'kysely'
import type { Sql } from './connection.ts'
import { completeIdempotencyKey, type HeldKey } from './idempotency.ts'
import { notifyJobRunners } from './job-queue.ts'
import { createdBefore, cursorCreatedAt, type JobCursor } from './jobs.ts'
import { inTransaction, query, run, runFirst, runOne } from './query.ts'

// Exports: the COPY statement that produces an export's bytes, and the async export jobs
// (db/migrations/0003_export_jobs.ts), whose runner statements are fenced by `lease_owner` like
// those of import jobs.

export type ExportFormat = 'csv' | 'ndjson' | 'json'
export type ExportStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled'

/** How a column is written: each kind has one CSV rendering that the import reads back exactly. */
export type ExportColumnKind = 'uuid' | 'text' | 'boolean' | 'timestamp' | 'tags'

/** How a filter tests its column (`has`: the array column contains the value). */
export type ExportFilterTest = '=' | '>=' | '<' | 'has'

/** What an export needs to know of a resource's table (derived from its descriptor, resources/). */
export interface ExportTable {
  table: string
  /** Every column, in export order, with its kind. */
  columns: Readonly<Record<string, ExportColumnKind>>
  /** Each filter: the column it tests and how. */
  filters: Readonly<Record<string, { column: string; test: ExportFilterTest }>>
}

export interface ExportQuery {
  table: ExportTable
  format: ExportFormat
  /** A subset of the table's columns, in the order wanted. */
  fields: readonly string[]
  /** Filter name → value, already validated against the resource's filter schema. */
  filters: Readonly<Record<string, string | boolean>>
  /** CSV only: neutralise cells that a spreadsheet would run as a formula. */
  escapeFormulas: boolean
}

// COPY takes no bind parameters, so the statement is built as text. Identifiers come only from
// the ExportTable (the request's field and filter names are checked against it first) and
// values only through `literal`, which is safe with standard_conforming_strings on (the export
// transaction sets it).
function literal(value: string | boolean, kind: ExportColumnKind): string {
  if (typeof value === 'boolean') return value ? 'true' : 'false'
  if (value.includes('\0')) throw new Error('a NUL character cannot be part of a filter value')
  const quoted = `'${value.replaceAll("'", "''")}'`
  return kind === 'uuid' ? `${quoted}::uuid` : kind === 'timestamp' ? `${quoted}::timestamptz` : quoted
}

function identifier(name: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain identifier: ${name}`)
  return `"${name}"`
}

/** A column as CSV text: every kind in the shape the import reads back to the same value. */
function csvColumn(name: string, kind: ExportColumnKind, escapeFormulas: boolean): string {
  const column = identifier(name)
  switch (kind) {
    case 'timestamp':
      // PostgreSQL's own output (the export transaction sets DateStyle ISO and TimeZone UTC):
      // `2024-05-01 10:00:00.123456+00`, microseconds kept, trailing zeros of the fraction
      // dropped; the import reads it back. to_char, for a `T` and a `Z`, cost a third of the export.
      return column
    case 'boolean':
      return `${column}::text as ${column}` // true/false (COPY alone writes t/f)
    case 'tags':
      return `to_json(${column})::text as ${column}` // ["a","b"]: tags may hold | and commas
    case 'text':
      return escapeFormulas
        ? `case when ${column} ~ '^[-=+@\\t\\r]' then '''' || ${column} else ${column} end as ${column}`
        : column
    default:
      return column
  }
}

/**
 * The COPY … TO STDOUT statement of an export. CSV: PostgreSQL writes the CSV itself, header
 * included. NDJSON and JSON: one row_to_json object per row, sent through COPY's CSV mode with a
 * quote and a delimiter that JSON text never holds unescaped (\x01, \x02), so that COPY adds no
 * quoting or backslash escapes of its own: each row arrives as one JSON text and a newline.
 * Rows come in the order the table stores them, each once (one statement, one snapshot): no
 * ORDER BY, which for a million rows cost as much as the rest of the export (ids are UUIDs, so
 * their order meant a random walk over the table or a sort).
 */
export function exportCopyStatement(query: ExportQuery): string {
  const { table, fields, filters } = query
  const conditions = Object.entries(filters).map(([name, value]) => {
    const filter = table.filters[name]
    if (!filter) throw new Error(`unknown filter ${name} for ${table.table}`)
    const kind = table.columns[filter.column] as ExportColumnKind
    const column = identifier(filter.column)
    return filter.test === 'has'
      ? `${column} @> array[${literal(value, 'text')}]::text[]`
      : `${column} ${filter.test} ${literal(value, kind)}`
  })
  for (const field of fields) {
    if (!(field in table.columns)) throw new Error(`unknown field ${field} for ${table.table}`)
  }
  const where = conditions.length > 0 ? ` where ${conditions.join(' and ')}` : ''
  const from = `from ${identifier(table.table)}${where}`
  if (query.format === 'csv') {
    const columns = fields.map((field) =>
      csvColumn(field, table.columns[field] as ExportColumnKind, query.escapeFormulas),
    )
    return `copy (select ${columns.join(', ')} ${from}) to stdout with (format csv, header true)`
  }
  const columns = fields.map(identifier).join(', ')
  return `copy (select row_to_json(r) from (select ${columns} ${from}) r) to stdout with (format csv, quote e'\\x01', delimiter e'\\x02')`
}

export interface ExportJobsTable {
  id: Generated<string>
  resource: string
  format: ExportFormat
  fields: string[] | null
  filters: ColumnType<Record<string, string | boolean>, RawBuilder<string> | undefined, never>
  compression: ColumnType<'none' | 'gzip', 'none' | 'gzip' | undefined, never>
  status: ColumnType<ExportStatus, ExportStatus | undefined, ExportStatus>
  created_at: ColumnType<Date, never, never>
  started_at: ColumnType<Date | null, never, Date | null>
  finished_at: ColumnType<Date | null, never, Date | null>
  rows: ColumnType<string, never, never>
  bytes: ColumnType<string, never, never>
  sha256: ColumnType<string | null, never, string | null>
  file_name: ColumnType<string | null, never, string | null>
  expires_at: ColumnType<Date | null, never, Date | null>
  file_deleted_at: ColumnType<Date | null, never, Date | null>
  downloaded_at: ColumnType<Date | null, never, Date | null>
  error: ColumnType<Record<string, unknown> | null, never, Record<string, unknown> | null>
  lease_owner: ColumnType<string | null, never, string | null>
  lease_expires_at: ColumnType<Date | null, never, Date | null>
  attempts: ColumnType<number, never, never>
  idempotency_key: string | null
}

export type ExportJobRow = Selectable<ExportJobsTable>

export interface NewExportJob {
  resource: string
  format: ExportFormat
  fields: string[] | null
  filters: Record<string, string | boolean>
  compression: 'none' | 'gzip'
  idempotency_key: string | null
}

/**
 * Inserts a queued export job and wakes the runners (NOTIFY import_jobs: one channel for every
 * kind of job). With an idempotency key, the key is completed in the same transaction.
 */
export async function insertExportJob(
  sql: Sql,
  job: NewExportJob,
  idempotency?: HeldKey & { fingerprint: string },
): Promise<ExportJobRow> {
  return inTransaction(sql, async (tx) => {
    const row = await runOne(
      tx,
      query
        .insertInto('export_jobs')
        .values({ ...job, filters: kyselySql<string>`${JSON.stringify(job.filters)}::text::jsonb` })
        .returningAll(),
    )
    if (idempotency) await completeIdempotencyKey(tx, idempotency, row.id)
    await notifyJobRunners(tx, row.id)
    return row
  })
}

export async function findExportJob(sql: Sql, id: string): Promise<ExportJobRow | undefined> {
  return runFirst(sql, query.selectFrom('export_jobs').selectAll().where('id', '=', id))
}

export interface ExportJobFilter {
  status?: ExportStatus
  resource?: string
  /** Only jobs created before this (created_at, id): the cursor of the previous page. */
  before?: JobCursor
  limit: number
}

/** Newest first; `before` continues after the last job of a previous page (see listImportJobs). */
export async function listExportJobs(
  sql: Sql,
  filter: ExportJobFilter,
): Promise<(ExportJobRow & { cursor_created_at: string })[]> {
  let listed = query.selectFrom('export_jobs').selectAll().select(cursorCreatedAt)
  if (filter.status) listed = listed.where('status', '=', filter.status)
  if (filter.resource) listed = listed.where('resource', '=', filter.resource)
  if (filter.before) listed = listed.where(createdBefore(filter.before))
  return run(sql, listed.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(filter.limit))
}

/** Completes a job this process owns: its file is in place. */
export async function completeExportJob(
  sql: Sql,
  jobId: string,
  owner: string,
  result: { rows: number; bytes: number; sha256: string; fileName: string; ttlSeconds: number },
): Promise<ExportJobRow | undefined> {
  const [row] = await sql<ExportJobRow[]>`
    update export_jobs set status = 'completed', finished_at = now(), rows = ${result.rows},
      bytes = ${result.bytes}, sha256 = ${result.sha256}, file_name = ${result.fileName},
      expires_at = now() + make_interval(secs => ${result.ttlSeconds}),
      lease_owner = null, lease_expires_at = null
    where id = ${jobId} and lease_owner = ${owner} and status = 'running'
    returning *`
  return row
}

/** Fails a job this process owns, with a problem. */
export async function failExportJob(
  sql: Sql,
  jobId: string,
  owner: string,
  problem: Record<string, unknown>,
): Promise<void> {
  await sql`
    update export_jobs set status = 'failed', finished_at = now(), error = ${sql.json(problem as never)},
      lease_owner = null, lease_expires_at = null
    where id = ${jobId} and lease_owner = ${owner} and status = 'running'`
}

/** Notes that an export's file was delivered (the first time only). */
export async function markExportDownloaded(sql: Sql, jobId: string): Promise<void> {
  await sql`update export_jobs set downloaded_at = now() where id = ${jobId} and downloaded_at is null`
}

/**
 * Marks up to `limit` expired exports as swept: their file names (for the caller to delete), their
 * resources, and whether each was ever downloaded.
 */
export async function sweepExpiredExports(
  sql: Sql,
  limit = 100,
): Promise<{ fileName: string; resource: string; fetched: boolean }[]> {
  return sql`
    update export_jobs set file_deleted_at = now()
    where id in (
      select id from export_jobs
      where file_deleted_at is null and file_name is not null and expires_at < now()
      order by expires_at
      for update skip locked
      limit ${limit}
    )
    returning file_name as "fileName", resource, downloaded_at is not null as fetched`
}

/** Which of these keys are the files of exports not yet swept (the rest are orphans). */
export async function liveExportFiles(sql: Sql, keys: string[]): Promise<Set<string>> {
  const rows = await sql<{ file_name: string }[]>`
    select file_name from export_jobs where file_name = any(${keys}::text[]) and file_deleted_at is null`
  return new Set(rows.map((row) => row.file_name))
}
