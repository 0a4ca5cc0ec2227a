import type { Sql } from '../../db/connection.ts'
import {
  claimIdempotencyKey,
  HEARTBEAT_MS,
  type HeldKey,
  type KeyState,
  releaseIdempotencyKey,
  renewIdempotencyKey,
  settledIdempotencyKey,
} from '../../db/idempotency.ts'
import { ProblemError } from '../../plugins/problem-details.ts'
import type { Config } from '../../schemas/config.ts'

export interface IdempotencyOptions {
  /** imports or exports: keys of one scope never meet those of another. */
  scope: string
  /** The request's Idempotency-Key, if it sent one. */
  key: string | undefined
  /** The 422 detail when the key was used for another request. */
  mismatch: string
  /** IDEMPOTENCY_TTL_SECONDS, and IDEMPOTENCY_WAIT_MS: how long to wait for a request that holds the key. */
  config: Pick<Config, 'IDEMPOTENCY_TTL_SECONDS' | 'IDEMPOTENCY_WAIT_MS'>
}

/** What a request that creates a job does with its key, inside idempotent(). */
export interface IdempotentRequest {
  /**
   * With the request's fingerprint known (what it asks for): the id of the job an earlier request
   * with this key created, to answer with again; or undefined, and this request creates the job.
   * @throws ProblemError 422 when the key was used for another request, 409 when it is still in flight
   */
  settle(fingerprint: string): Promise<string | undefined>
  /** The key that the job's insert completes, in its transaction (undefined without a key). */
  completion(): (HeldKey & { fingerprint: string }) | undefined
}

/**
 * The Idempotency-Key protocol of a request that creates a job (docs/contract.md §9), for both
 * POSTs: claims the key at once (so that a retry arriving meanwhile waits for this request), keeps
 * it alive while the request works (an upload may take minutes), settles it once the request's
 * fingerprint is known (replay, refusal, or go on), and releases it when the request fails, so
 * that a retry can try again. `run` creates the job; the insert completes the key.
 */
export async function idempotent<T>(
  sql: Sql,
  options: IdempotencyOptions,
  run: (request: IdempotentRequest) => Promise<T>,
): Promise<T> {
  const { scope, key } = options
  let fingerprint: string | undefined
  if (!key) {
    return run({
      settle: async () => undefined,
      completion: () => undefined,
    })
  }
  let claim = await claimIdempotencyKey(sql, scope, key, options.config.IDEMPOTENCY_TTL_SECONDS)
  const held = (): HeldKey | undefined => (claim.owned ? { scope, key, token: claim.token } : undefined)
  const heartbeat = setInterval(() => {
    const current = held()
    if (current) void renewIdempotencyKey(sql, current).catch(() => {})
  }, HEARTBEAT_MS)
  try {
    return await run({
      async settle(requested) {
        fingerprint = requested
        if (claim.owned) return undefined
        // Another request holds (or held) the key: replay its job, or refuse.
        const acquired = await acquireIdempotencyKey(sql, { ...options, key, fingerprint: requested }, claim)
        if ('replay' in acquired) return acquired.replay
        claim = acquired
        return undefined
      },
      completion() {
        const current = held()
        return current && fingerprint !== undefined ? { ...current, fingerprint } : undefined
      },
    })
  } catch (error) {
    const current = held()
    if (current) await releaseIdempotencyKey(sql, current).catch(() => {})
    throw error
  } finally {
    clearInterval(heartbeat)
  }
}

/** A key to settle: what the request asks for (its fingerprint) must be what the key was used for. */
type KeyRequest = IdempotencyOptions & { key: string; fingerprint: string }

/**
 * Settles an Idempotency-Key (docs/contract.md §9) that another request held when this one claimed it:
 * waits while that request is in flight, takes the key over if it was released meanwhile, or
 * names the job the key completed with, to be replayed.
 * @throws ProblemError 422 when the key completed with another fingerprint, 409 when it is still in flight after `waitMs`
 */
async function acquireIdempotencyKey(
  sql: Sql,
  request: KeyRequest,
  state: KeyState,
): Promise<{ owned: true; token: string } | { replay: string }> {
  const { scope, key } = request
  let claim = state
  for (;;) {
    if (claim.owned) return claim
    const settled = await settledIdempotencyKey(sql, scope, key, claim, request.config.IDEMPOTENCY_WAIT_MS)
    if (settled.owned) return settled
    if (settled.state === 'completed') {
      if (settled.fingerprint !== request.fingerprint) throw new ProblemError('unprocessable', request.mismatch)
      return { replay: settled.jobId as string }
    }
    if (settled.state === 'in_flight') {
      throw new ProblemError('conflict', 'A request with this Idempotency-Key is still in progress; retry later.')
    }
    claim = await claimIdempotencyKey(sql, scope, key, request.config.IDEMPOTENCY_TTL_SECONDS)
  }
}
