import {
  type AliasedRawBuilder,
  type Compilable,
  type Expression,
  type QueryCreator,
  type RawBuilder,
  sql,
} from 'kysely'
import type { Sql } from './connection.ts'
import { run, runCount } from './query.ts'

// The shared shape of the resources' bulk upserts (each descriptor's, resources/<name>.ts).
//
// One statement writes a batch. Its parameters are the batch's valid records as one array per
// column (PostgreSQL array literals built by the worker thread) plus a range of ordinals, so the
// SQL text never changes and no parameter limit applies.
//
// docs/contract.md §3 demands the outcome of applying the records one at a time, in file order. A single
// statement sees the table as it was before the statement, so it can only apply, at once,
// records that cannot see each other's effects: records whose touched keys (the row they target,
// their natural key, the natural key that row had before) are pairwise disjoint. The statement
// finds the first record that shares a key with an earlier one in the range and applies only the
// records before it; the caller runs the statement again from there. Files without repeated keys
// take one statement per batch; a batch whose every record repeats a key takes one per record.

/** A record the statement rejected (docs/contract.md §7 codes), by its ordinal in the batch. */
export interface UpsertError {
  ord: number
  /** The record's id, when it has one. */
  id?: string | null
  code: 'unique_violation' | 'foreign_key_violation' | 'invalid_state' | 'database_error'
  field?: string
  value?: string | null
  message: string
}

export interface UpsertOutcome {
  inserted: number
  updated: number
  errors: UpsertError[]
  /** The first ordinal the statement did not apply (it shares a key with an earlier record), or null. */
  next: number | null
  /**
   * The keys the statement read or wrote (target rows, natural keys claimed or given up), as
   * 64-bit hashes packed in a buffer. Two batches whose keys are disjoint give the same outcome
   * whichever runs first.
   */
  touched: Buffer | null
}

/** What a range of a batch did; `touched` holds 52 bits of each key's hash (exact in a number). */
export type AppliedRange = Omit<UpsertOutcome, 'next' | 'touched'> & { touched: Set<number> }

/** The records of a batch a statement applies: the batch's arrays and a range of its ordinals. */
export interface UpsertBatch {
  /** One PostgreSQL array literal per input column (UpsertStatement.input), in its order. */
  readonly params: readonly string[]
  /** The first ordinal to apply. */
  readonly from: number
  /** The ordinal after the last one to apply. */
  readonly to: number
}

/** A resource's bulk upsert, built with Kysely's query builder (db/query.ts) for each range. */
export interface UpsertStatement {
  /**
   * The SQL type of each array parameter, in the order of the batch's arrays: `ord`, the
   * resource's columns, then `has_<column>` (boolean) for each nullable column. Checked against
   * the descriptor's columns at start-up.
   */
  readonly input: Readonly<Record<string, string>>
  /** The statement over the records of `batch` with ordinals in [from, to). */
  build(batch: UpsertBatch): Compilable<UpsertOutcome>
  /**
   * The insert-first statement over the same records: each inserted as a new row, with the values
   * `build` gives a new row, and no look-up. It succeeds exactly when every record is new (no
   * existing row or earlier record has its id or natural key) and its references exist; otherwise
   * a unique, foreign-key or check violation undoes it, and the batch runs `build` instead
   * (`insertNewRange`).
   */
  insertNew(batch: UpsertBatch): Compilable<unknown>
}

/** A string literal in the statement's text (SQL's own constants stay out of the parameters). */
export function literal<Value extends string | number>(value: Value): RawBuilder<Value> {
  return sql.lit(value) as RawBuilder<Value>
}

/**
 * The batch's records with ordinals in [from, to), as the from-item `r`: an `unnest` of the
 * arrays, each cast to its type (`input`), the columns named after `input`'s keys. Use with
 * `inRange` in the query's where clause.
 */
export function batchRecords<Row>(batch: UpsertBatch, input: { readonly [Column in keyof Row]: string }) {
  const names = Object.keys(input) as (keyof Row & string)[]
  const arrays = names.map((name, at) => sql`${batch.params[at]}::${sql.raw(input[name])}[]`)
  return sql<Row>`unnest(${sql.join(arrays)})`.as<'r'>(sql`r(${sql.join(names.map((name) => sql.ref(name)))})`)
}

/** `r.ord` within the batch's range. */
export function inRange(batch: UpsertBatch): RawBuilder<boolean> {
  return sql<boolean>`r.ord >= ${batch.from} and r.ord < ${batch.to}`
}

/**
 * A key of the `touched` CTE: a one-letter kind (`t` the target row, or the natural key's) and
 * the value, in the "C" collation (only equality matters, and it hashes fastest).
 */
export function touchedKey(kind: string, value: string): AliasedRawBuilder<string, 'k'> {
  return sql<string>`${sql.lit(kind)} || ${sql.ref(value)}::text collate "C"`.as('k')
}

/**
 * The key-blocking CTEs every upsert shares. They read `touched` (ord, k), the keys each record
 * targets or gives up, and find the first record that repeats a key of an earlier one: `blocked`
 * holds its ordinal (null when none); the statement applies only the records before it.
 */
export function withKeyBlocking<DB>(creator: QueryCreator<DB>) {
  return creator
    .with(
      'repeated',
      () =>
        sql<{ k: string; first: number }>`(select k, min(ord) as first from touched group by k having count(*) > 1)`,
    )
    .with(
      'blocked',
      () => sql<{ at: number | null }>`(
        select min(t.ord) as at from touched t join repeated r on r.k = t.k and t.ord > r.first)`,
    )
}

/** `ord` is before the first blocked record: the record is applied by this statement. */
export function notBlocked(ord: string): RawBuilder<boolean> {
  return sql<boolean>`${sql.ref(ord)} < coalesce((select at from blocked), 2147483647)`
}

/**
 * The statement's one row (UpsertOutcome), read from its `inserted`, `updated` and `touched`
 * CTEs; `errors` is a query of one row and one column, the json array of the failed records (or
 * null when none).
 */
export function outcomeColumns(errors: Compilable<unknown> & Expression<unknown>) {
  return [
    sql<number>`(select count(*) from inserted)::int`.as('inserted'),
    sql<number>`(select count(*) from updated)::int`.as('updated'),
    sql<UpsertError[]>`coalesce((${errors}), '[]')`.as('errors'),
    sql<number | null>`(select at from blocked)`.as('next'),
    // The keys this statement read or wrote, as 64-bit hashes: a concurrent batch that shares
    // none could not see it (a hash collision only costs a needless rerun).
    sql<Buffer | null>`(select string_agg(int8send(hashtextextended(k, 0)), ''::bytea) from touched t
      where ${notBlocked('t.ord')})`.as('touched'),
  ] as const
}

/**
 * Inserts the records with ordinals in [from, to) of a batch as new rows (the insert-first
 * statement): `valid` records, or a data error (class 22 or 23) when one of them is not new. Runs
 * inside the caller's transaction, which the error leaves aborted.
 *
 * Its outcome reports no touched keys, and need not: every key a statement reads (a row's id, its
 * natural key) is under a unique index, so a later batch that reads one of these new rows before
 * they are committed also writes that key (an update, or an insert of the same key) and waits
 * for this batch's transaction; after the commit it fails and runs again (app/imports/batch-writer.ts).
 */
export async function insertNewRange(
  sql: Sql,
  statement: UpsertStatement,
  params: readonly string[],
  from: number,
  to: number,
  valid: number,
): Promise<AppliedRange> {
  // Not prepared, like the upsert (db/query.ts).
  const inserted = await runCount(sql, statement.insertNew({ params, from, to }), { prepare: false })
  if (inserted !== valid) throw new Error(`the insert-first statement inserted ${inserted} of ${valid} records`)
  return { inserted: valid, updated: 0, errors: [], touched: new Set() }
}

/**
 * Applies the records with ordinals in [from, to) of a batch, in order (one or more statements).
 * Runs inside the caller's transaction.
 */
export async function applyRange(
  sql: Sql,
  statement: UpsertStatement,
  params: readonly string[],
  from: number,
  to: number,
): Promise<AppliedRange> {
  const total: AppliedRange = { inserted: 0, updated: 0, errors: [], touched: new Set() }
  let start = from
  while (start < to) {
    // Not prepared: the rule and its measured reason are in db/query.ts.
    const [outcome] = await run(sql, statement.build({ params, from: start, to }), { prepare: false })
    if (!outcome) throw new Error('the upsert returned no row')
    total.inserted += outcome.inserted
    total.updated += outcome.updated
    total.errors.push(...outcome.errors)
    const hashes = outcome.touched
    if (hashes) {
      for (let at = 0; at + 8 <= hashes.length; at += 8) {
        total.touched.add((hashes.readUInt32BE(at) & 0xfffff) * 0x100000000 + hashes.readUInt32BE(at + 4))
      }
    }
    if (outcome.next === null) break
    start = outcome.next
  }
  return total
}
