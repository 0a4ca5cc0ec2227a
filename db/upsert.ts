import type { Sql } from './connection.ts'

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

export interface UpsertStatement {
  /** Statement text; parameters: the batch's arrays, then the first and the end ordinal. */
  text: string
}

/**
 * Applies the records with ordinals in [from, to) of a batch, in order (one or more statements).
 * Runs inside the caller's transaction.
 */
export async function applyRange(
  sql: Sql,
  statement: UpsertStatement,
  params: string[],
  from: number,
  to: number,
): Promise<AppliedRange> {
  const total: AppliedRange = { inserted: 0, updated: 0, errors: [], touched: new Set() }
  let start = from
  while (start < to) {
    // Not prepared: the rule and its measured reason are in db/query.ts.
    const [outcome] = (await sql.unsafe(statement.text, [...params, start, to], { prepare: false })) as unknown as [
      UpsertOutcome,
    ]
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
