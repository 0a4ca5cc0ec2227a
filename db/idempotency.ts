import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Sql } from './connection.ts'

// Idempotency-Key bookkeeping (docs/contract.md §9). The primary key (scope, key) decides, inside
// PostgreSQL, which of several concurrent requests is the first: never check-then-insert. The
// request that holds a key in flight holds its token: only it can renew, complete or free the
// key, so a request that stalled long enough to lose its key to another can never complete it
// too (which would make two jobs for one key).

/** A request holding an in-flight key renews it this often; a key silent for STALE_SECONDS is free. */
export const HEARTBEAT_MS = 10_000
const STALE_SECONDS = 30

export type KeyState =
  | { owned: true; token: string }
  | { owned: false; state: 'in_flight' | 'completed'; fingerprint: string | null; jobId: string | null }
  | { owned: false; state: 'absent' }

/**
 * Claims a key for this request, or tells who has it. An expired key, or an in-flight one whose
 * request stopped renewing it (its process died), is taken over.
 */
export async function claimIdempotencyKey(sql: Sql, scope: string, key: string, ttlSeconds: number): Promise<KeyState> {
  const token = randomUUID()
  const [claimed] = await sql`
    insert into idempotency_keys (scope, key, state, expires_at, token)
    values (${scope}, ${key}, 'in_flight', now() + make_interval(secs => ${ttlSeconds}), ${token})
    on conflict (scope, key) do update
      set state = 'in_flight', fingerprint = null, job_id = null, created_at = now(), heartbeat_at = now(),
        expires_at = excluded.expires_at, token = excluded.token
      where idempotency_keys.expires_at < now()
        or (idempotency_keys.state = 'in_flight' and idempotency_keys.heartbeat_at < now() - make_interval(secs => ${STALE_SECONDS}))
    returning 1`
  if (claimed) return { owned: true, token }
  return readIdempotencyKey(sql, scope, key)
}

export async function readIdempotencyKey(sql: Sql, scope: string, key: string): Promise<KeyState> {
  const [row] = await sql<{ state: 'in_flight' | 'completed'; fingerprint: string | null; job_id: string | null }[]>`
    select state, fingerprint, job_id from idempotency_keys
    where scope = ${scope} and key = ${key} and expires_at >= now()`
  if (!row) return { owned: false, state: 'absent' }
  return { owned: false, state: row.state, fingerprint: row.fingerprint, jobId: row.job_id }
}

/** For a key held by another request: waits (at most `waitMs`) until that request settles. */
export async function settledIdempotencyKey(
  sql: Sql,
  scope: string,
  key: string,
  state: KeyState,
  waitMs: number,
): Promise<KeyState> {
  const deadline = Date.now() + waitMs
  let current = state
  while (!current.owned && current.state === 'in_flight' && Date.now() < deadline) {
    await sleep(50)
    current = await readIdempotencyKey(sql, scope, key)
  }
  return current
}

/** A request's key was taken over by another request (it went silent too long): it must not complete it. */
export class IdempotencyKeyLost extends Error {
  constructor(key: string) {
    super(`the Idempotency-Key ${key} was taken over by another request`)
    this.name = 'IdempotencyKeyLost'
  }
}

/** A key held by the request that holds `token`. */
export interface HeldKey {
  scope: string
  key: string
  token: string
}

/**
 * Completes a key with the job its request created: called inside the transaction that inserts
 * the job, so that a job never exists without its key, nor a key without its job.
 * @throws IdempotencyKeyLost when the request no longer holds the key (the job is rolled back)
 */
export async function completeIdempotencyKey(
  transaction: Sql,
  idempotency: HeldKey & { fingerprint: string },
  jobId: string,
): Promise<void> {
  const rows = await transaction`
    update idempotency_keys set state = 'completed', fingerprint = ${idempotency.fingerprint}, job_id = ${jobId}
    where scope = ${idempotency.scope} and key = ${idempotency.key} and state = 'in_flight'
      and token = ${idempotency.token}
    returning 1`
  if (rows.length === 0) throw new IdempotencyKeyLost(idempotency.key)
}

/** Keeps a held key from going stale while its request runs (a long upload). */
export async function renewIdempotencyKey(sql: Sql, held: HeldKey): Promise<void> {
  await sql`
    update idempotency_keys set heartbeat_at = now()
    where scope = ${held.scope} and key = ${held.key} and state = 'in_flight' and token = ${held.token}`
}

/** The request that held the key failed: free it, so that a retry can run (if it still holds it). */
export async function releaseIdempotencyKey(sql: Sql, held: HeldKey): Promise<void> {
  await sql`
    delete from idempotency_keys
    where scope = ${held.scope} and key = ${held.key} and state = 'in_flight' and token = ${held.token}`
}
