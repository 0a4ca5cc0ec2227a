import type { Sql } from './connection.ts'
import type { ExportJobRow } from './exports.ts'
import type { ImportJobRow } from './imports.ts'

// The job queue, written once for both kinds of job. Import and export jobs keep tables of their
// own (their rows share the queue's columns, and little else: an import has counters, checkpoints
// and an errors table, an export a file), and this module runs the same queue over either table:
// claim, lease renewal, hand-back, a run lost with its thread, attempts and their cap. What
// differs between the kinds is in `rules` below, and nowhere else. docs/api.md, "Jobs", argues
// the choice (one module over two tables rather than one table with a kind).

export type JobKind = 'import' | 'export'
export type JobRow<K extends JobKind> = K extends 'import' ? ImportJobRow : ExportJobRow

/**
 * The NOTIFY channel that wakes the job runners of every process (app/jobs/runner.ts listens), for
 * both kinds: sent when a job is queued, handed back, or finishes (a job waiting for its resource
 * may go on). Its payload is the job's id; an import's events listen too (watchJob).
 */
export const JOB_CHANNEL = 'bulkio_jobs'

/**
 * Calls `changed` on each NOTIFY about one job (queued, handed back, finished), from any process;
 * resolves, once listening, to the unsubscribe. For live views of a job (an import's events).
 */
export async function watchJob(sql: Sql, jobId: string, changed: () => void): Promise<() => Promise<void>> {
  // postgres.js listens again after its connection breaks, with copies of the listeners that an
  // earlier unlisten does not remove: what such a copy holds on to is let go here.
  let notify: (() => void) | undefined = changed
  const { unlisten } = await sql.listen(JOB_CHANNEL, (payload) => {
    if (payload === jobId) notify?.()
  })
  return async () => {
    notify = undefined
    await unlisten()
  }
}

/** Wakes the job runners of every process, when the transaction that queued a job commits. */
export async function notifyJobRunners(transaction: Sql, jobId: string): Promise<void> {
  await transaction`select pg_notify(${JOB_CHANNEL}, ${jobId})`
}

const rules = {
  import: {
    table: (sql: Sql) => sql`import_jobs`,
    /**
     * A queued import waits out its `not_before` (it was deferred), and an import of a resource
     * another import is writing stays queued (imports of one resource write one at a time): it
     * holds no slot while it waits.
     */
    claimable: (sql: Sql) => sql`
      ((candidate.status = 'queued' and (candidate.not_before is null or candidate.not_before <= now()))
        or (candidate.status = 'running' and candidate.lease_expires_at < now()))
      and not exists (
        select 1 from import_jobs writer
        where writer.resource = candidate.resource and writer.status = 'running'
          and writer.lease_expires_at >= now() and writer.id <> candidate.id
      )`,
    /** What a claim resets besides the lease (a deferral and a wait are over), after a comma. */
    onClaim: (sql: Sql) => sql`, not_before = null, waiting = null`,
    /** What a hand-back clears besides the lease, after a comma. */
    onHandBack: (sql: Sql) => sql`, waiting = null`,
    /** An import records its progress with each batch it commits, not with its heartbeat. */
    onRenew: (sql: Sql, _progress?: { rows: number; bytes: number }) => sql``,
    cancelRequested: (sql: Sql) => sql`cancel_requested`,
  },
  export: {
    table: (sql: Sql) => sql`export_jobs`,
    /** A queued export waits out its `not_before` (the store did not take its file: it was deferred). */
    claimable: (sql: Sql) => sql`
      (candidate.status = 'queued' and (candidate.not_before is null or candidate.not_before <= now()))
        or (candidate.status = 'running' and candidate.lease_expires_at < now())`,
    /** An export starts its file again from the first row; it has nothing more to clear on a hand-back. */
    onClaim: (sql: Sql) => sql`, rows = 0, bytes = 0, not_before = null`,
    onHandBack: (sql: Sql) => sql``,
    /** An export records the rows and bytes written so far with its heartbeat. */
    onRenew: (sql: Sql, progress?: { rows: number; bytes: number }) =>
      progress ? sql`, rows = ${progress.rows}, bytes = ${progress.bytes}` : sql``,
    cancelRequested: (sql: Sql) => sql`false`,
  },
} as const

/**
 * Claims the oldest job of a kind that is queued, or running under a lease that expired (its
 * owner died): FOR UPDATE SKIP LOCKED lets several processes claim at once without taking the
 * same job. Each claim counts an attempt; a run handed back in good order gives it back. A job
 * with `maxAttempts` attempts is not claimed again, even when its lease expired after the last
 * `failExhaustedJobs` (under load that came between the two, and a fourth run of three began).
 */
export async function claimJob<K extends JobKind>(
  sql: Sql,
  kind: K,
  owner: string,
  leaseSeconds: number,
  maxAttempts: number,
): Promise<JobRow<K> | undefined> {
  const rule = rules[kind]
  const [row] = await sql<JobRow<K>[]>`
    update ${rule.table(sql)} set status = 'running', lease_owner = ${owner},
      lease_expires_at = now() + make_interval(secs => ${leaseSeconds}),
      started_at = coalesce(started_at, now()), attempts = attempts + 1 ${rule.onClaim(sql)}
    where id = (
      select id from ${rule.table(sql)} candidate
      where (${rule.claimable(sql)}) and candidate.attempts < ${maxAttempts}
      order by created_at
      for update skip locked
      limit 1
    )
    returning *`
  return row
}

/** Whether a job of either kind could be claimed now: queued, or running under an expired lease. */
export async function hasClaimableJob(sql: Sql): Promise<boolean> {
  const [row] = await sql<{ found: boolean }[]>`
    select exists (
      select 1 from import_jobs where status = 'queued' or (status = 'running' and lease_expires_at < now())
    ) or exists (
      select 1 from export_jobs where status = 'queued' or (status = 'running' and lease_expires_at < now())
    ) as found`
  return row?.found ?? false
}

/**
 * Extends the lease of a job this process claimed, if no claim came since (its attempt is still
 * `attempts`): false when another claim, in this process or another, has taken the job.
 */
export async function renewClaim(
  sql: Sql,
  kind: JobKind,
  claim: { id: string; attempts: number },
  owner: string,
  leaseSeconds: number,
): Promise<boolean> {
  const [row] = await sql`
    update ${rules[kind].table(sql)} set lease_expires_at = now() + make_interval(secs => ${leaseSeconds})
    where id = ${claim.id} and lease_owner = ${owner} and status = 'running' and attempts = ${claim.attempts}
    returning 1`
  return Boolean(row)
}

/**
 * The heartbeat of a running job: extends its lease (and, for an export, records the rows and
 * bytes written so far). `owned` is false when this process no longer owns the job;
 * `cancelRequested` says a cancel was asked (imports).
 */
export async function renewLease(
  sql: Sql,
  kind: JobKind,
  jobId: string,
  owner: string,
  leaseSeconds: number,
  progress?: { rows: number; bytes: number },
): Promise<{ owned: boolean; cancelRequested: boolean }> {
  const rule = rules[kind]
  const [row] = await sql<{ cancel_requested: boolean }[]>`
    update ${rule.table(sql)} set lease_expires_at = now() + make_interval(secs => ${leaseSeconds}) ${rule.onRenew(sql, progress)}
    where id = ${jobId} and lease_owner = ${owner} and status = 'running'
    returning ${rule.cancelRequested(sql)} as cancel_requested`
  return { owned: Boolean(row), cancelRequested: row?.cancel_requested ?? false }
}

/**
 * Gives a running job back to the queue in good order (shutdown, or its database went away):
 * another process takes it at once (or after `delayMs`: its store was away), and the run does not
 * count as an attempt.
 */
export async function releaseJob(
  sql: Sql,
  kind: JobKind,
  jobId: string,
  owner: string,
  delayMs?: number,
): Promise<void> {
  const rule = rules[kind]
  const notBefore = delayMs === undefined ? sql`` : sql`, not_before = now() + make_interval(secs => ${delayMs / 1000})`
  await sql`
    with released as (
      update ${rule.table(sql)} set status = 'queued', lease_owner = null, lease_expires_at = null,
        attempts = attempts - 1 ${rule.onHandBack(sql)} ${notBefore}
      where id = ${jobId} and lease_owner = ${owner} and status = 'running'
      returning id
    )
    select pg_notify(${JOB_CHANNEL}, id::text) from released`
}

/**
 * Hands back a job whose run was lost with its thread (it crashed): claimable again at once, the
 * run counted as an attempt.
 */
export async function releaseLostRun(sql: Sql, kind: JobKind, jobId: string, owner: string): Promise<void> {
  const rule = rules[kind]
  await sql`
    with released as (
      update ${rule.table(sql)} set status = 'queued', lease_owner = null, lease_expires_at = null
        ${rule.onHandBack(sql)}
      where id = ${jobId} and lease_owner = ${owner} and status = 'running'
      returning id
    )
    select pg_notify(${JOB_CHANNEL}, id::text) from released`
}

/**
 * Fails the jobs of a kind whose runs ended abnormally `maxAttempts` times (their process or
 * thread died while running them), instead of claiming them again; returns their ids.
 */
export async function failExhaustedJobs(
  sql: Sql,
  kind: JobKind,
  maxAttempts: number,
  problem: Record<string, unknown>,
): Promise<string[]> {
  const rule = rules[kind]
  const rows = await sql<{ id: string }[]>`
    update ${rule.table(sql)} set status = 'failed', finished_at = now(), error = ${sql.json(problem as never)},
      lease_owner = null, lease_expires_at = null ${rule.onHandBack(sql)}
    where id in (
      select id from ${rule.table(sql)}
      where (status = 'queued' or (status = 'running' and lease_expires_at < now())) and attempts >= ${maxAttempts}
      for update skip locked
    )
    returning id`
  return rows.map((row) => row.id)
}
