import t, { type Test } from 'tap'
import { connect } from '../../db/connection.ts'
import { createTestDatabase } from '../db.ts'

// The database connections when their server ends them (a failover, pg_terminate_backend): every
// query settles with an error, nothing stops the process, and the pool serves again. postgres.js
// 3.4.9 does not do all of this by itself: patches/ carries the fixes (README, layout).

async function pools(t: Test, max = 3) {
  const url = await createTestDatabase(t)
  const service = connect(url, { max })
  const killer = connect(url, { max: 1 })
  t.teardown(async () => {
    await service.close(1)
    await killer.close(1)
  })
  const terminate = (pid: number) => killer.sql`select pg_terminate_backend(${pid})`
  return { sql: service.sql, terminate }
}

t.test('a reserved connection ended mid-transaction: its queries settle, the pool serves again', async (t) => {
  const { sql, terminate } = await pools(t)
  for (let round = 0; round < 3; round++) {
    const lane = await sql.reserve()
    const [{ pid } = { pid: 0 }] = await lane<{ pid: number }[]>`select pg_backend_pid() as pid`
    await lane.unsafe('begin')
    // A statement in flight, and parameterised ones queued behind it on the reservation.
    const running = lane`select pg_sleep(5)`.then(
      () => 'ran',
      (error) => error.code,
    )
    const queued = [1, 2, 3].map((n) =>
      lane`select ${n}::int as n`.then(
        () => 'ran',
        (error) => error.code,
      ),
    )
    await new Promise((resolve) => setTimeout(resolve, 100))
    await terminate(pid)
    const outcomes = await Promise.all([running, ...queued])
    t.ok(
      outcomes.every((outcome) => outcome !== 'ran'),
      `round ${round}: every query of the ended session failed (${outcomes.join(', ')})`,
    )
    t.equal(
      await lane.unsafe('rollback').then(
        () => 'ran',
        (error) => error.code,
      ),
      'CONNECTION_CLOSED',
    )
    lane.release()
    const [row] = await sql<{ one: number }[]>`select 1 as one`
    t.equal(row?.one, 1, `round ${round}: the pool serves again`)
  }
})

t.test('a reservation whose connection ended fails fast, even once the pool reconnects that connection', async (t) => {
  // One connection: after it ends, the pool's next query reconnects the very connection the
  // reservation held. A query then sent on the reservation must not go down that new session
  // (it would be sent before the session's start-up and never be answered).
  const { sql, terminate } = await pools(t, 1)
  const outcome = (query: Promise<unknown>) =>
    Promise.race([
      query.then(
        () => 'ran',
        (error) => error.code,
      ),
      new Promise((resolve) => setTimeout(() => resolve('no answer within 5 s'), 5000)),
    ])
  for (let round = 0; round < 3; round++) {
    const lane = await sql.reserve()
    const [{ pid } = { pid: 0 }] = await lane<{ pid: number }[]>`select pg_backend_pid() as pid`
    await lane.unsafe('begin')
    const running = outcome(lane`select pg_sleep(5)`)
    await new Promise((resolve) => setTimeout(resolve, 100))
    await terminate(pid)
    t.not(await running, 'ran', `round ${round}: the statement in flight failed`)
    const pooled = outcome(sql`select 1 as one`) // reconnects the connection
    t.equal(await outcome(lane.unsafe('rollback')), 'CONNECTION_CLOSED', `round ${round}: the reservation is done`)
    t.equal(await pooled, 'ran', `round ${round}: the pool's query ran`)
    lane.release()
    t.equal(await outcome(sql`select 1 as one`), 'ran', `round ${round}: the pool serves after the release`)
  }
})

t.test('a transaction (sql.begin) ended mid-statement rejects, and the process goes on', async (t) => {
  const { sql, terminate } = await pools(t)
  let pid = 0
  const transaction = sql.begin(async (tx) => {
    ;[{ pid } = { pid: 0 }] = await tx<{ pid: number }[]>`select pg_backend_pid() as pid`
    await tx`select pg_sleep(5)`
  })
  // Its outcome is taken at once: the transaction may reject before the terminating query returns.
  const outcome = transaction.then(
    () => 'committed',
    (error) => error.code,
  )
  while (pid === 0) await new Promise((resolve) => setTimeout(resolve, 20))
  await terminate(pid)
  t.equal(await outcome, 'CONNECTION_CLOSED')
  // Its ROLLBACK was written to the closed connection on a later tick: that must not throw.
  await new Promise((resolve) => setTimeout(resolve, 100))
  const [row] = await sql<{ one: number }[]>`select 1 as one`
  t.equal(row?.one, 1)
})
