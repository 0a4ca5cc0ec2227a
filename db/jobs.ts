import { sql as kyselySql, type RawBuilder } from 'kysely'
import type { Sql } from './connection.ts'

// What both kinds of job (import_jobs, export_jobs) share beyond the queue (db/job-queue.ts):
// list cursors, and the counts /metrics reads.

/** A page position in a job list: the last job's created_at (text, to the microsecond) and id. */
export interface JobCursor {
  createdAt: string
  id: string
}

/**
 * A listed job's created_at to the microsecond, as ISO 8601 text in UTC, for its cursor: a JS
 * Date keeps only milliseconds, and a cursor built from it would skip the jobs created earlier
 * within the same millisecond.
 */
export const cursorCreatedAt =
  kyselySql<string>`to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as('cursor_created_at')

/**
 * The jobs after `cursor` in newest-first order: (created_at, id) below the cursor's, as one row
 * comparison that the (created_at desc, id desc) index serves. The timestamp travels as text (a
 * Date parameter would be truncated again).
 */
export function createdBefore(cursor: JobCursor): RawBuilder<boolean> {
  return kyselySql<boolean>`(created_at, id) < (${cursor.createdAt}::text::timestamptz, ${cursor.id}::uuid)`
}

/** A job's state as the metrics count it: waiting is a queued or running job that waits its turn. */
export type JobGaugeStatus = 'queued' | 'running' | 'waiting'

/**
 * Jobs not yet done, by kind and state, across every process (for /metrics): waiting counts the
 * imports that wait for their resource or for row locks (progress.waiting), or for their retry
 * time after being deferred.
 */
export async function unfinishedJobCounts(
  sql: Sql,
): Promise<{ kind: 'import' | 'export'; status: JobGaugeStatus; count: number }[]> {
  return sql`
    select 'import' as kind,
      case when waiting is not null or not_before > now() then 'waiting' else status end as status,
      count(*)::int as count
    from import_jobs where status in ('queued', 'running') group by 1, 2
    union all
    select 'export', status, count(*)::int from export_jobs where status in ('queued', 'running') group by 1, 2`
}

/** The service's connections to its database (every process), by pool (application_name) and state. */
export async function serviceConnectionCounts(sql: Sql): Promise<{ pool: string; state: string; count: number }[]> {
  return sql`
    select application_name as pool, coalesce(state, 'unknown') as state, count(*)::int as count
    from pg_stat_activity
    where datname = current_database() and application_name like 'bulk-io%'
    group by 1, 2`
}
