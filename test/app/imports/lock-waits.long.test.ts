import t from 'tap'
import { createTestDatabase } from '../../db.ts'
import {
  appWithLockedUser,
  buildTestApp,
  countRows,
  generated,
  importJob,
  outsiderConnection,
  startImport,
  until,
  usersCsv,
  waitForImport,
} from '../../helper.ts'

// Lock waits that take seconds by design (make test-long): a batch whose rows another transaction
// keeps locked waits as long as it takes, the job's bookkeeping never trips the lanes' lock
// timeout, and a shutdown never waits for another transaction's lock.

t.test('a lock held longer than any timeout: the job waits, then completes exactly', async (t) => {
  const { app, other } = await appWithLockedUser(t, { prefix: 'held', seeded: 5, locked: 3 })
  const created = await startImport(app, 'users', usersCsv(40, { prefix: 'held' }))
  await until(async () => ((await importJob(app, created.id)).progress.waiting ? true : undefined), 'the wait')
  // Longer than the four seconds after which a lock wait used to fail the job.
  await new Promise((resolve) => setTimeout(resolve, 6000))
  t.equal((await importJob(app, created.id)).status, 'running', 'still waiting, not failed')
  await other`rollback`
  other.release()
  const final = await waitForImport(app, created.id)
  t.equal(final.status, 'completed')
  t.same(final.counters, { processed: 40, inserted: 35, updated: 5, failed: 0 })
  t.equal(final.progress.waiting, null)
  t.equal(await countRows(app, 'select 1 from users'), 40)
})

t.test('bookkeeping never trips the lanes’ lock timeout: a job row locked for a moment now and then', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const app = await buildTestApp(t, { databaseUrl, environment: { BATCH_SIZE: '20' } })
  app.jobs.start()
  const created = await startImport(app, 'users', await generated({ resource: 'users', format: 'csv', rows: 10_000 }))
  const other = await outsiderConnection(t, databaseUrl)
  // What a heartbeat or a cancel request does, but for longer than the lanes' 100 ms timeout.
  let status = 'queued'
  while (status === 'queued' || status === 'running') {
    await other`begin`
    await other`select 1 from import_jobs where id = ${created.id} for update`
    await new Promise((resolve) => setTimeout(resolve, 300))
    await other`commit`
    await new Promise((resolve) => setTimeout(resolve, 50))
    status = (await importJob(app, created.id)).status
  }
  other.release()
  const final = await importJob(app, created.id)
  t.equal(final.status, 'completed', `completed (error: ${JSON.stringify(final.error)})`)
  t.equal(final.counters.processed, 10_000)
})

t.test('a shutdown does not wait for another transaction’s lock: the job goes back to the queue', async (t) => {
  const { app, other } = await appWithLockedUser(t, { prefix: 'stuck', seeded: 1, locked: 1 })
  const created = await startImport(app, 'users', usersCsv(20, { prefix: 'stuck' }))
  await until(async () => ((await importJob(app, created.id)).progress.waiting ? true : undefined), 'the wait')
  const started = Date.now()
  await app.close()
  const seconds = (Date.now() - started) / 1000
  t.ok(seconds < 5, `closed while the lock is still held (${seconds} s)`)
  const [row] = await other<{ status: string; processed: string; waiting: unknown }[]>`
    select status, processed, waiting from import_jobs where id = ${created.id}`
  t.same(row, { status: 'queued', processed: '0', waiting: null }, 'handed back, nothing committed')
  await other`rollback`
  other.release()
})
