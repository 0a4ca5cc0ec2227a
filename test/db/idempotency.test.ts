import t, { type Test } from 'tap'
import { connect } from '../../db/connection.ts'
import {
  claimIdempotencyKey,
  IdempotencyKeyLost,
  type KeyState,
  readIdempotencyKey,
  releaseIdempotencyKey,
  renewIdempotencyKey,
} from '../../db/idempotency.ts'
import { insertImportJob, type NewImportJob } from '../../db/imports.ts'
import { createTestDatabase } from '../db.ts'

// Idempotency-Key completion and release are fenced by the request that holds the key: a request
// that went silent long enough for another to take its key over can neither free nor complete
// it, so one key never names two jobs.

const SCOPE = 'imports'
const job: NewImportJob = { resource: 'users', format: 'csv', dry_run: false, source_type: 'upload', batch_size: 10 }

async function database(t: Test) {
  const connection = connect(await createTestDatabase(t), { max: 2 })
  t.teardown(() => connection.close())
  return connection
}

function token(state: KeyState): string {
  if (!state.owned) throw new Error(`the key is not held: ${JSON.stringify(state)}`)
  return state.token
}

/** Makes the key's holder look gone (no heartbeat for a minute), as a stalled request would. */
async function stall(sql: ReturnType<typeof connect>['sql'], key: string) {
  await sql`update idempotency_keys set heartbeat_at = now() - interval '1 minute' where key = ${key}`
}

t.test('a request whose key was taken over cannot free it: the new holder keeps it', async (t) => {
  const { sql } = await database(t)
  const first = token(await claimIdempotencyKey(sql, SCOPE, 'k1', 3600))
  await stall(sql, 'k1')
  const second = token(await claimIdempotencyKey(sql, SCOPE, 'k1', 3600))
  t.not(second, first, 'the second request holds the key now')
  await releaseIdempotencyKey(sql, { scope: SCOPE, key: 'k1', token: first })
  t.match(await readIdempotencyKey(sql, SCOPE, 'k1'), { owned: false, state: 'in_flight' }, 'still held')
  await releaseIdempotencyKey(sql, { scope: SCOPE, key: 'k1', token: second })
  t.same(await readIdempotencyKey(sql, SCOPE, 'k1'), { owned: false, state: 'absent' }, 'freed by its holder')
})

t.test('a request whose key was taken over cannot complete it: its job is rolled back', async (t) => {
  const { sql } = await database(t)
  const first = token(await claimIdempotencyKey(sql, SCOPE, 'k2', 3600))
  await stall(sql, 'k2')
  const second = token(await claimIdempotencyKey(sql, SCOPE, 'k2', 3600))
  await t.rejects(
    insertImportJob(sql, job, { scope: SCOPE, key: 'k2', token: first, fingerprint: 'a' }),
    IdempotencyKeyLost,
  )
  const [before] = await sql<{ count: number }[]>`select count(*)::int as count from import_jobs`
  t.equal(before?.count, 0, 'no job for the request that lost its key')
  const created = await insertImportJob(sql, job, { scope: SCOPE, key: 'k2', token: second, fingerprint: 'b' })
  t.same(await readIdempotencyKey(sql, SCOPE, 'k2'), {
    owned: false,
    state: 'completed',
    fingerprint: 'b',
    jobId: created.id,
  })
})

t.test('a heartbeat of a request that lost its key does not keep the new holder’s key alive', async (t) => {
  const { sql } = await database(t)
  const first = token(await claimIdempotencyKey(sql, SCOPE, 'k3', 3600))
  await stall(sql, 'k3')
  token(await claimIdempotencyKey(sql, SCOPE, 'k3', 3600))
  await stall(sql, 'k3')
  await renewIdempotencyKey(sql, { scope: SCOPE, key: 'k3', token: first })
  const third = await claimIdempotencyKey(sql, SCOPE, 'k3', 3600)
  t.equal(third.owned, true, 'the silent holder was not kept alive by the old one')
})
