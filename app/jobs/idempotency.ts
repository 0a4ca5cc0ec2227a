import type { Sql } from '../../db/connection.ts'
import { claimIdempotencyKey, type KeyState, settledIdempotencyKey } from '../../db/idempotency.ts'
import { ProblemError } from '../../plugins/problem-details.ts'

export interface KeyRequest {
  /** imports or exports: keys of one scope never meet those of another. */
  scope: string
  key: string
  /** What the request asks for (resource, options, file or URL): the same key must ask the same. */
  fingerprint: string
  ttlSeconds: number
  /** How long to wait for another request that holds the key in flight. */
  waitMs: number
  /** The 422 detail when the key was used for another request. */
  mismatch: string
}

/**
 * Settles an Idempotency-Key (docs/contract.md §9) that another request held when this one claimed it:
 * waits while that request is in flight, takes the key over if it was released meanwhile, or
 * names the job the key completed with, to be replayed.
 * @throws ProblemError 422 when the key completed with another fingerprint, 409 when it is still in flight after `waitMs`
 */
export async function acquireIdempotencyKey(
  sql: Sql,
  request: KeyRequest,
  state: KeyState,
): Promise<{ owned: true; token: string } | { replay: string }> {
  const { scope, key } = request
  let claim = state
  for (;;) {
    if (claim.owned) return claim
    const settled = await settledIdempotencyKey(sql, scope, key, claim, request.waitMs)
    if (settled.owned) return settled
    if (settled.state === 'completed') {
      if (settled.fingerprint !== request.fingerprint) throw new ProblemError('unprocessable', request.mismatch)
      return { replay: settled.jobId as string }
    }
    if (settled.state === 'in_flight') {
      throw new ProblemError('conflict', 'A request with this Idempotency-Key is still in progress; retry later.')
    }
    claim = await claimIdempotencyKey(sql, scope, key, request.ttlSeconds)
  }
}

/** The problem of a request whose key another request took over while it ran (it went silent). */
export function keyLostProblem(): ProblemError {
  return new ProblemError(
    'conflict',
    'Another request took this Idempotency-Key over while this one ran (it went silent for too long); send the request again with the same key to get the job.',
  )
}
