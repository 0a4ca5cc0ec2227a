import type { FastifyBaseLogger } from 'fastify'
import type postgres from 'postgres'
import type { Sql } from '../../db/connection.ts'
import { isDataError, isTransientConflict } from '../../db/errors.ts'
import { commitBatch, type ImportJobRow, type JobWaiting } from '../../db/imports.ts'
import { type AppliedRange, applyRange, insertNewRange, type UpsertError } from '../../db/upsert.ts'
import type { ResourceDescriptor as ImportResource } from '../../resources/index.ts'
import type { BatchResult } from '../workers/import-batch.ts'
import { InsertFirst } from './insert-first.ts'
import type { RecordBatch } from './record-splitter.ts'
import type { UnknownFieldList } from './unknown-fields.ts'

// Writes an import's batches in file order, each in one transaction with the job's counters,
// checkpoint and error rows.
//
// A normal import writes on two connections ("lanes"): batch k+1 runs its statements while batch
// k is still running or committing, which lets PostgreSQL use two cores. Batch k+1 commits only
// after k did, and only if the two batches touched no common key (the statements report the keys
// they read and wrote): then k+1's outcome is the one it would have had after k. Otherwise it
// rolls back and runs again, now after k. When batch k waits for a lock that k+1 holds (k+1 waits
// for k), k's lock_timeout fires; k asks k+1 to roll back, and tries again.
//
// A batch first tries the resource's insert-first statement (a plain insert, three times the
// upsert's speed) unless app/imports/insert-first.ts says to skip it; when a record is not new the
// statement fails and the batch runs the upsert instead, in a new transaction. Such a batch reports
// no touched keys: its keys are under unique indexes, so a neighbour that reads one writes it
// too, waits for this batch, and runs again (db/upsert.ts, insertNewRange).
//
// A dry run writes on one connection, in one transaction rolled back at the end, so that later
// batches see the earlier ones; its counters and errors are committed outside that transaction.
//
// A batch whose rows another transaction keeps locked (another import's batch, a dry run that
// holds its locks to its end, a client of the database) waits for them: after a few quick tries
// it shows the job as waiting and tries again every WAITING_LOCK_TIMEOUT_MS, so that a cancel or
// a shutdown still takes effect within that time. The lock timeouts cover the upsert statements
// only: the job's own row, which the heartbeat and cancel requests lock for an instant, is
// written without one.
//
// Longer than most files on purpose: the lanes, their commit order, the key-conflict check and the
// lock waits keep one set of invariants, and reading them apart would hide how they hold.

/**
 * How long a lane's statement waits for a lock before the conflict is resolved by hand. Short:
 * a batch that waits for its neighbour's rows overlaps with it, and runs again anyway.
 */
const LOCK_TIMEOUT_MS = 100
/** Tries with LOCK_TIMEOUT_MS before a batch counts as waiting for another transaction. */
const QUICK_TRIES = 10
/** The lock timeout of a waiting batch's tries: how soon it notices a cancel or a shutdown. */
const WAITING_LOCK_TIMEOUT_MS = 1000
const LANES = 2

export class LeaseLost extends Error {}

/** Another import of the resource holds its write lock (imports of one resource write one at a time). */
export class ResourceBusy extends Error {
  constructor(resource: string) {
    super(`another import of ${resource} is writing`)
    this.name = 'ResourceBusy'
  }
}

const rowLocksWaiting = (): JobWaiting => ({
  reason: 'row_locks',
  detail:
    'Waiting for rows that another transaction keeps locked (another import, a dry run, or a client of the database); the job goes on once they are released.',
  since: new Date().toISOString(),
})

export interface WriterContext {
  job: ImportJobRow
  resource: ImportResource
  /** Connections for the lanes (reserved for the job's duration) and the job's bookkeeping. */
  sql: Sql
  owner: string
  leaseSeconds: number
  maxErrorsPerJob: number
  log: FastifyBaseLogger
  /** Aborted at shutdown: the batch in hand is finished, unless it waits for another transaction. */
  signal: AbortSignal
  /** Aborted when the job's cancel is seen: nothing is committed after it. */
  cancel: AbortSignal
  counters: { processed: number; inserted: number; updated: number; failed: number; errorsStored: number }
  onCommitted(resource: string, counts: CommittedBatch): void
  /** Shows (or, with null, clears) why the job does not advance. */
  showWaiting(waiting: JobWaiting | null): Promise<void>
}

export type WriterState = 'go' | 'cancelled' | 'released'

/** The statement that wrote a batch: the insert-first statement, or the upsert. */
export type BatchStatement = 'insert_first' | 'upsert'

/** A committed batch, for the metrics. */
export interface CommittedBatch {
  inserted: number
  updated: number
  failed: number
  seconds: number
  statement: BatchStatement
}

export interface BatchWriter {
  /** Takes the connections and the resource's write lock. @throws ResourceBusy when another import holds it */
  begin(): Promise<void>
  /** Queues a batch (in file order); resolves once the next one may come. */
  submit(
    batch: RecordBatch,
    result: BatchResult,
    bytesRead: number,
    warnings: string[],
    unknownFields: UnknownFieldList,
  ): Promise<WriterState>
  /** Waits until every queued batch is committed (or the job stopped). */
  finish(): Promise<WriterState>
  /** Rolls back whatever is open and gives the connections back. */
  close(): Promise<void>
}

type Reserved = postgres.ReservedSql<Record<string, never>>

function lockKey(resource: ImportResource): string {
  return `bulk-io:import:${resource.name}`
}

function code(error: unknown): string | undefined {
  return (error as { code?: string } | null)?.code
}

/** Waits for a lock too long, or was chosen as a deadlock victim: another batch holds the lock. */
function isLockConflict(error: unknown): boolean {
  return code(error) === '55P03' || isTransientConflict(error)
}

/**
 * Runs the upsert over a batch, inside an open transaction. Isolating, each range runs in a
 * savepoint and a range the database refuses is halved until the refused records are alone
 * (they get database_error).
 */
async function applyBatch(
  sql: Reserved,
  resource: ImportResource,
  batch: RecordBatch,
  result: BatchResult,
  isolate: boolean,
) {
  const end = batch.spans.length + 1
  if (result.valid === 0) return { inserted: 0, updated: 0, errors: [], touched: new Set<number>() } as AppliedRange
  if (!isolate) return applyRange(sql as unknown as Sql, resource.upsert, result.params, 1, end)
  const total: AppliedRange = { inserted: 0, updated: 0, errors: [], touched: new Set() }
  let savepoints = 0
  const isolateRange = async (from: number, to: number): Promise<void> => {
    const name = `range_${savepoints++}`
    await sql.unsafe(`savepoint ${name}`)
    try {
      const part = await applyRange(sql as unknown as Sql, resource.upsert, result.params, from, to)
      await sql.unsafe(`release savepoint ${name}`)
      total.inserted += part.inserted
      total.updated += part.updated
      total.errors.push(...part.errors)
      for (const key of part.touched) total.touched.add(key)
    } catch (error) {
      if (!isDataError(error)) throw error
      await sql.unsafe(`rollback to savepoint ${name}`)
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

/** The batch's error rows (import_errors), and the records that failed. */
function errorRows(batch: RecordBatch, result: BatchResult, applied: AppliedRange) {
  const rows: Record<string, unknown>[] = []
  const failed = new Set<number>()
  const seq = new Map<number, number>()
  const add = (
    index: number,
    error: { field?: string; code: string; message: string; value?: string | null; id?: string | null },
  ) => {
    const span = batch.spans[index]
    if (!span) return
    failed.add(index)
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
  for (const error of applied.errors as UpsertError[]) add(error.ord - 1, error)
  rows.sort((a, b) => (a.record as number) - (b.record as number) || (a.seq as number) - (b.seq as number))
  return { rows, failed: failed.size }
}

/**
 * Records a batch's outcome with the job (in the batch's transaction for a normal run) and
 * returns the state to go on in. @throws LeaseLost when the job is no longer ours.
 */
async function recordBatch(
  context: WriterContext,
  sql: Sql,
  batch: RecordBatch,
  result: BatchResult,
  applied: AppliedRange,
  bytesRead: number,
  warnings: string[],
  unknownFields: UnknownFieldList,
): Promise<{
  state: WriterState
  counts: { inserted: number; updated: number; failed: number }
  kept: number
  /** False when the batch must be rolled back (a cancel was asked first). */
  committed: boolean
}> {
  const { rows, failed } = errorRows(batch, result, applied)
  const room = Math.max(0, context.maxErrorsPerJob - context.counters.errorsStored)
  const kept = rows.length > room ? rows.slice(0, room) : rows
  if (kept.length < rows.length) {
    const warning = `only the first ${context.maxErrorsPerJob} errors are kept (IMPORT_MAX_ERRORS); later ones are counted, not listed`
    if (!warnings.includes(warning)) warnings.push(warning)
  }
  const last = batch.spans[batch.spans.length - 1] as RecordBatch['spans'][number]
  const counts = { inserted: applied.inserted, updated: applied.updated, failed }
  const recorded = await commitBatch(sql, {
    jobId: context.job.id,
    owner: context.owner,
    leaseSeconds: context.leaseSeconds,
    processed: batch.spans.length,
    ...counts,
    errorsJson: JSON.stringify(kept),
    errorCount: kept.length,
    bytesRead,
    checkpointRecord: last.record,
    // Where a resumed run reads on from (a ranged read); 0: from the start, passing over the
    // committed records (a batch after which the splitter cannot be entered, see RecordBatch.resume).
    checkpointLine: batch.resume?.line ?? batch.endLine,
    checkpointOffset: batch.resume?.offset ?? 0,
    warnings,
    unknownFields,
  })
  if (recorded === 'lost') throw new LeaseLost()
  if (recorded === 'cancelled') return { state: 'cancelled', counts, kept: 0, committed: false }
  return { state: context.signal.aborted ? 'released' : 'go', counts, kept: kept.length, committed: true }
}

function account(
  context: WriterContext,
  batch: RecordBatch,
  counts: { inserted: number; updated: number; failed: number },
  kept: number,
  seconds: number,
  statement: BatchStatement,
) {
  const counters = context.counters
  counters.processed += batch.spans.length
  counters.inserted += counts.inserted
  counters.updated += counts.updated
  counters.failed += counts.failed
  counters.errorsStored += kept
  context.onCommitted(context.resource.name, { ...counts, seconds, statement })
}

interface Completion {
  touched: Set<number>
  state: WriterState
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Runs `attempt` (a batch's statements) until it gets its locks: a lock conflict rolls back
 * (`onConflict`) and tries again, after QUICK_TRIES with the job shown as waiting and with
 * WAITING_LOCK_TIMEOUT_MS per try. Between tries it stops, returning undefined, on a cancel, and
 * on a shutdown once waiting (a shutdown never waits for another process's transaction).
 */
async function withLockWaits<T>(
  context: WriterContext,
  attempt: (lockTimeoutMs: number) => Promise<T>,
  onConflict: () => void | Promise<void>,
): Promise<T | undefined> {
  let waiting = false
  for (let tries = 1; ; tries++) {
    if (context.cancel.aborted || (waiting && context.signal.aborted)) return undefined
    try {
      return await attempt(waiting ? WAITING_LOCK_TIMEOUT_MS : LOCK_TIMEOUT_MS)
    } catch (error) {
      if (!isLockConflict(error)) throw error
      await onConflict()
      if (!waiting && tries >= QUICK_TRIES) {
        waiting = true
        await context.showWaiting(rowLocksWaiting())
        context.log.info('a batch waits for rows another transaction keeps locked')
      }
      if (!waiting) await sleep(10 * tries)
    }
  }
}

/** The state a batch stops in when withLockWaits gave up: cancelled, else handed back. */
function stoppedState(context: WriterContext): Exclude<WriterState, 'go'> {
  return context.cancel.aborted ? 'cancelled' : 'released'
}

/** One batch on its lane: statements, wait for the previous batch, check, commit. */
class LaneTask {
  successor: LaneTask | undefined
  /** The batch carries a key of the previous one: it runs after it, not beside it. */
  afterPrevious = false
  /** The writer's insert-first policy, when this batch tries it first (app/imports/insert-first.ts). */
  insertFirst: InsertFirst | undefined
  /** The statement of the outcome in hand. */
  private statement: BatchStatement = 'upsert'
  private readonly yieldRequested = Promise.withResolvers<'yield'>()
  private readonly context: WriterContext
  private readonly batch: RecordBatch
  private readonly result: BatchResult
  private readonly bytesRead: number
  private readonly warnings: string[]
  private readonly unknownFields: UnknownFieldList

  constructor(
    context: WriterContext,
    batch: RecordBatch,
    result: BatchResult,
    bytesRead: number,
    warnings: string[],
    unknownFields: UnknownFieldList,
  ) {
    this.context = context
    this.batch = batch
    this.result = result
    this.bytesRead = bytesRead
    this.warnings = warnings
    this.unknownFields = unknownFields
  }

  /** The previous batch waits for a lock this one holds: give it up. */
  requestYield(): void {
    this.yieldRequested.resolve('yield')
  }

  async run(lane: Reserved, previous: Promise<Completion> | undefined): Promise<Completion> {
    const started = performance.now()
    const { context, batch, result } = this
    let open = false
    const begin = async (lockTimeoutMs = LOCK_TIMEOUT_MS) => {
      await lane.unsafe(`begin; set local lock_timeout = ${lockTimeoutMs}`)
      open = true
    }
    const rollback = async () => {
      if (!open) return
      open = false
      await lane.unsafe('rollback')
    }
    try {
      let applied: AppliedRange | undefined
      let failure: unknown
      if (this.afterPrevious && previous) await previous.catch(() => {})
      await begin()
      try {
        applied = await this.firstTry(lane, begin, rollback)
      } catch (error) {
        if (!isLockConflict(error) && !isDataError(error)) throw error
        if (isLockConflict(error)) this.successor?.requestYield()
        failure = error
        await rollback()
      }
      let before: Completion | undefined
      if (previous) {
        const first = await Promise.race([
          previous.then(
            () => 'done' as const,
            () => 'done' as const,
          ),
          this.yieldRequested.promise,
        ])
        if (first === 'yield' && open) {
          // The previous batch waits for a lock we hold: let go, and run again after it.
          applied = undefined
          await rollback()
        }
        before = await previous
      }
      if (before && before.state !== 'go') {
        await rollback()
        return { touched: new Set(), state: before.state }
      }
      // A batch that started after the previous one committed saw it: nothing to check.
      const reran =
        !applied || (!this.afterPrevious && before !== undefined && overlaps(applied.touched, before.touched))
      if (!applied || reran) {
        this.statement = 'upsert'
        await rollback()
        applied = await this.runAgain(lane, isDataError(failure), begin, rollback)
        if (!applied) return { touched: new Set(), state: stoppedState(context) }
      }
      const done: AppliedRange = applied
      // The job's own row is locked for an instant by the heartbeat and by cancel requests: its
      // update waits for them (no lock timeout). Sent now (postgres.js queries are lazy), the
      // reset is pipelined with the update on the lane: no extra round trip.
      const untimed = lane.unsafe('set local lock_timeout = 0').execute()
      const recorded = await recordBatch(
        context,
        lane as unknown as Sql,
        batch,
        result,
        done,
        this.bytesRead,
        this.warnings,
        this.unknownFields,
      )
      await untimed
      if (!recorded.committed) {
        await rollback()
        return { touched: new Set(), state: recorded.state }
      }
      await lane.unsafe('commit')
      open = false
      const seconds = (performance.now() - started) / 1000
      account(context, batch, recorded.counts, recorded.kept, seconds, this.statement)
      context.log.debug({ record: batch.spans.at(-1)?.record, seconds, reran }, 'batch committed')
      return { touched: done.touched, state: recorded.state }
    } catch (error) {
      await rollback().catch(() => {})
      throw error
    }
  }

  /**
   * The batch's first run, beside the previous batch: the insert-first statement when the policy
   * says so, then (if a record was not new) the upsert, in a new transaction.
   */
  private async firstTry(
    lane: Reserved,
    begin: () => Promise<void>,
    rollback: () => Promise<void>,
  ): Promise<AppliedRange> {
    const { context, batch, result, insertFirst } = this
    if (insertFirst && result.valid > 0) {
      try {
        const end = batch.spans.length + 1
        const applied = await insertNewRange(
          lane as unknown as Sql,
          context.resource.upsert,
          result.params,
          1,
          end,
          result.valid,
        )
        insertFirst.succeeded()
        this.statement = 'insert_first'
        return applied
      } catch (error) {
        if (!isDataError(error)) throw error
        insertFirst.failed()
        await rollback()
        await begin()
      }
    }
    return applyBatch(lane, context.resource, batch, result, false)
  }

  /**
   * Runs the batch again once the previous one committed; waits out lock conflicts (asking the
   * next batch to yield each time). Undefined when it stopped waiting (see withLockWaits).
   */
  private async runAgain(
    lane: Reserved,
    isolate: boolean,
    begin: (lockTimeoutMs: number) => Promise<void>,
    rollback: () => Promise<void>,
  ): Promise<AppliedRange | undefined> {
    let isolated = isolate
    return withLockWaits(
      this.context,
      async (lockTimeoutMs) => {
        for (;;) {
          await begin(lockTimeoutMs)
          try {
            return await applyBatch(lane, this.context.resource, this.batch, this.result, isolated)
          } catch (error) {
            await rollback()
            // A record the database refuses: run again, isolating the refused records.
            if (!isDataError(error) || isolated) throw error
            isolated = true
          }
        }
      },
      () => this.successor?.requestYield(),
    )
  }
}

/** Whether two sorted key lists share a key. */
function sharesKey(a: Float64Array, b: Float64Array): boolean {
  let i = 0
  let j = 0
  while (i < a.length && j < b.length) {
    const x = a[i] as number
    const y = b[j] as number
    if (x === y) return true
    if (x < y) i++
    else j++
  }
  return false
}

function overlaps(a: Set<number>, b: Set<number>): boolean {
  const [small, large] = a.size < b.size ? [a, b] : [b, a]
  for (const key of small) if (large.has(key)) return true
  return false
}

/** Takes the resource's write lock on `sql` without waiting: false when another import has it. */
async function tryResourceLock(sql: Reserved, resource: ImportResource, scope: 'session' | 'transaction') {
  const [row] = await (scope === 'session'
    ? sql<{ locked: boolean }[]>`select pg_try_advisory_lock(hashtextextended(${lockKey(resource)}, 0)) as locked`
    : sql<{ locked: boolean }[]>`select pg_try_advisory_xact_lock(hashtextextended(${lockKey(resource)}, 0)) as locked`)
  return row?.locked === true
}

/** The writer of normal imports: two lanes, commits in file order. */
export class LaneWriter implements BatchWriter {
  private readonly context: WriterContext
  private lanes: Reserved[] = []
  private free: Reserved[] = []
  private readonly inFlight = new Set<Promise<Completion>>()
  private tail: Promise<Completion> | undefined
  private last: LaneTask | undefined
  private lastCarried: Float64Array | undefined
  private state: WriterState = 'go'
  private locked = false
  private readonly insertFirst = new InsertFirst()
  /** The first batch that failed (its connection went away, say): nothing after it may go on. */
  private failure: { error: unknown } | undefined

  constructor(context: WriterContext) {
    this.context = context
  }

  async begin(): Promise<void> {
    for (let lane = 0; lane < LANES; lane++) this.lanes.push((await this.context.sql.reserve()) as unknown as Reserved)
    this.free = [...this.lanes]
    // One import of a resource writes at a time: a session lock, held by the first lane. A job
    // that cannot have it goes back to the queue rather than hold its slot and lanes waiting.
    this.locked = await tryResourceLock(this.lanes[0] as Reserved, this.context.resource, 'session')
    if (!this.locked) throw new ResourceBusy(this.context.resource.name)
  }

  async submit(
    batch: RecordBatch,
    result: BatchResult,
    bytesRead: number,
    warnings: string[],
    unknownFields: UnknownFieldList,
  ): Promise<WriterState> {
    while (this.free.length === 0 && this.state === 'go' && !this.failure) await Promise.race(this.inFlight)
    if (this.failure) throw this.failure.error
    if (this.state !== 'go') return this.state
    const lane = this.free.pop() as Reserved
    const task = new LaneTask(this.context, batch, result, bytesRead, [...warnings], unknownFields)
    // Sorted in place (the batch's own array): two sorted lists intersect without a Set, whose
    // 10,000 entries a batch would each allocate (hashes above 2^31 are heap numbers).
    const carried = result.carried.sort()
    task.afterPrevious = this.lastCarried !== undefined && sharesKey(carried, this.lastCarried)
    if (this.insertFirst.wanted()) task.insertFirst = this.insertFirst
    this.lastCarried = carried
    if (this.last) this.last.successor = task
    this.last = task
    const completion = task.run(lane, this.tail).then(
      (done) => {
        if (done.state !== 'go' && this.state === 'go') this.state = done.state
        return done
      },
      (error) => {
        // Kept, so that a failure is never lost with a batch that left the in-flight set.
        this.failure ??= { error }
        throw error
      },
    )
    const settled = completion.finally(() => {
      this.free.push(lane)
      this.inFlight.delete(completion)
    })
    settled.catch(() => {})
    this.inFlight.add(completion)
    this.tail = completion
    return this.state
  }

  async finish(): Promise<WriterState> {
    await Promise.allSettled([...this.inFlight])
    if (this.failure) throw this.failure.error
    return this.state
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.inFlight])
    const first = this.lanes[0]
    if (first && this.locked)
      await first`select pg_advisory_unlock(hashtextextended(${lockKey(this.context.resource)}, 0))`.catch(() => {})
    for (const lane of this.lanes) lane.release()
    this.lanes = []
  }
}

/**
 * The writer of dry runs: one transaction for the whole job, rolled back by close(); each batch in
 * a savepoint; counters and errors committed outside it, on the job's bookkeeping connection.
 */
export class DryRunWriter implements BatchWriter {
  private readonly context: WriterContext
  private lane: Reserved | undefined
  private state: WriterState = 'go'

  constructor(context: WriterContext) {
    this.context = context
  }

  async begin(): Promise<void> {
    this.lane = (await this.context.sql.reserve()) as unknown as Reserved
    await this.lane.unsafe('begin')
    if (!(await tryResourceLock(this.lane, this.context.resource, 'transaction')))
      throw new ResourceBusy(this.context.resource.name)
  }

  async submit(
    batch: RecordBatch,
    result: BatchResult,
    bytesRead: number,
    warnings: string[],
    unknownFields: UnknownFieldList,
  ): Promise<WriterState> {
    if (this.state !== 'go') return this.state
    const lane = this.lane as Reserved
    const started = performance.now()
    // Each try in a savepoint: a lock timeout then undoes the batch alone, not the dry run.
    const applied = await withLockWaits(
      this.context,
      async (lockTimeoutMs) => {
        await lane.unsafe(`savepoint dry_run_batch; set local lock_timeout = ${lockTimeoutMs}`)
        const done = await applyBatch(lane, this.context.resource, batch, result, true)
        await lane.unsafe('release savepoint dry_run_batch')
        return done
      },
      () => lane.unsafe('rollback to savepoint dry_run_batch').then(() => {}),
    )
    if (!applied) {
      this.state = stoppedState(this.context)
      return this.state
    }
    const recorded = await recordBatch(
      this.context,
      this.context.sql,
      batch,
      result,
      applied,
      bytesRead,
      warnings,
      unknownFields,
    )
    if (recorded.committed)
      account(this.context, batch, recorded.counts, recorded.kept, (performance.now() - started) / 1000, 'upsert')
    this.state = recorded.state
    return this.state
  }

  async finish(): Promise<WriterState> {
    return this.state
  }

  async close(): Promise<void> {
    if (!this.lane) return
    await this.lane.unsafe('rollback').catch(() => {})
    this.lane.release()
    this.lane = undefined
  }
}
