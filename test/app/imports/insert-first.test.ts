import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { buildTestApp, countRows, importAndWait, until, usersCsv } from '../../helper.ts'

// A batch of new records is written by the insert-first statement (a plain insert); a batch with
// one record that is not new falls back to the upsert, with the same outcome as if it had gone
// there first (app/imports/insert-first.ts, db/upsert.ts). The metric says which statement wrote
// each batch, so these tests see the path taken, not only the result.

const BATCH_SIZE = '100'

async function batchesWritten(app: FastifyInstance): Promise<{ insert_first: number; upsert: number }> {
  const text = (await app.inject({ url: '/metrics' })).body
  const count = (statement: string) =>
    Number(
      new RegExp(`^bulkio_import_batches_total\\{resource="users",statement="${statement}"\\} (\\d+)$`, 'm').exec(
        text,
      )?.[1] ?? Number.NaN,
    )
  return { insert_first: count('insert_first'), upsert: count('upsert') }
}

/** Waits until the job thread's metric messages for `total` batches arrived. */
function batchesSeen(app: FastifyInstance, total: number) {
  return until(async () => {
    const seen = await batchesWritten(app)
    return seen.insert_first + seen.upsert >= total ? seen : undefined
  }, `${total} batches in the metrics`)
}

t.test('a file of new users: every batch is written by the insert-first statement', async (t) => {
  const app = await buildTestApp(t, { environment: { BATCH_SIZE } })
  app.jobs.start()
  t.same(await batchesWritten(app), { insert_first: 0, upsert: 0 }, 'both series exist at zero')
  const job = await importAndWait(app, { resource: 'users', file: usersCsv(300), filename: 'users.csv' })
  t.equal(job.status, 'completed')
  t.same(job.counters, { processed: 300, inserted: 300, updated: 0, failed: 0 })
  t.same(await batchesSeen(app, 3), { insert_first: 3, upsert: 0 })
  t.equal(await countRows(app, 'users'), 300)

  // The same file again: every record updates its row, and the batches fall back to the upsert
  // (a failed try makes the next batches skip it).
  const again = await importAndWait(app, { resource: 'users', file: usersCsv(300), filename: 'users.csv' })
  t.same(again.counters, { processed: 300, inserted: 0, updated: 300, failed: 0 })
  t.same(await batchesSeen(app, 6), { insert_first: 3, upsert: 3 })
  t.equal(await countRows(app, 'users'), 300)
})

t.test('one record that is not new sends its batch to the upsert, with the exact outcome', async (t) => {
  const app = await buildTestApp(t, { environment: { BATCH_SIZE } })
  app.jobs.start()
  await app.sql`insert into users (email, name, role) values ('Taken@Example.com', 'Before', 'admin')`
  // 400 new users, but the last record of the second batch has the stored user's email (in
  // another case): it updates that user. The second record of the fourth batch repeats the id
  // of its first: it updates the row its batch inserted.
  const rows = usersCsv(400).trimEnd().split('\n')
  rows[200] = 'taken@example.com,After,editor'
  const header = `id,${rows[0]}`
  const id = '7d0f6c58-5a7e-4a59-9d0e-5d3c4c1b2a10'
  const lines = rows.slice(1).map((row, index) => {
    if (index === 300) return `${id},${row}`
    if (index === 301) return `${id},second@example.com,Second,author`
    return `,${row}`
  })
  const job = await importAndWait(app, {
    resource: 'users',
    file: `${header}\n${lines.join('\n')}\n`,
    filename: 'users.csv',
  })
  t.equal(job.status, 'completed')
  t.same(job.counters, { processed: 400, inserted: 398, updated: 2, failed: 0 })
  // Batch 1 is new; batches 2 and 4 fall back. Batch 3 (new records) is written either way: by
  // the upsert when it skipped the try after batch 2's failure, by the insert when it was on its
  // way beside batch 2 before that failure was known.
  const seen = await batchesSeen(app, 4)
  t.ok(
    (seen.insert_first === 1 && seen.upsert === 3) || (seen.insert_first === 2 && seen.upsert === 2),
    `batches 2 and 4 by the upsert (${JSON.stringify(seen)})`,
  )
  t.equal(await countRows(app, 'users'), 399, 'the stored user and 398 new ones')
  const [taken] = await app.sql<{ email: string; name: string; role: string }[]>`
    select email, name, role from users where lower(email) = 'taken@example.com'`
  t.same(taken, { email: 'taken@example.com', name: 'After', role: 'editor' }, 'the stored user was updated')
  const [repeated] = await app.sql<{ email: string; name: string }[]>`select email, name from users where id = ${id}`
  t.same(repeated, { email: 'second@example.com', name: 'Second' }, 'the repeated id ends as its second record')
  t.equal(await countRows(app, "select 1 from users where email = 'user301@example.com'"), 0, 'given up by the id')
})
