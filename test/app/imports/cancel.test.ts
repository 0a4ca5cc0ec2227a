import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import type { ImportJob } from '../../../schemas/imports.ts'
import {
  appWithLockedUser,
  buildTestApp,
  countRows,
  generated,
  importJob,
  startImport,
  until,
  usersCsv,
  waitForImport,
} from '../../helper.ts'

// A cancel takes effect promptly in every state of a job, and a cancelled job writes nothing
// after the cancel was accepted. A job waiting for another import of its resource holds neither
// a job slot nor a connection, and says what it waits for.

t.test(
  'a job behind another import of its resource stays queued, holds no slot, says why, and cancels at once',
  async (t) => {
    const app = await buildTestApp(t, { environment: { BATCH_SIZE: '100', WORKER_POOL_SIZE: '2' } })
    app.jobs.start()
    const author = await startImport(app, 'users', usersCsv(1, { prefix: 'author' }))
    await waitForImport(app, author.id)
    const [authorRow] = await app.sql<{ id: string }[]>`select id from users`

    const long = await startImport(app, 'users', await generated({ resource: 'users', format: 'csv', rows: 60_000 }))
    await until(
      async () => ((await importJob(app, long.id)).counters.processed > 0 ? true : undefined),
      'the long import',
    )
    const behind = await startImport(app, 'users', usersCsv(50, { prefix: 'behind' }))

    const queued = await until(async () => {
      const body = await importJob(app, behind.id)
      return body.progress.waiting ? body : undefined
    }, 'the waiting job to say why')
    t.equal(queued.status, 'queued', 'it waits in the queue, not in a slot')
    t.same(queued.progress.waiting, {
      reason: 'resource_busy',
      detail: `Waiting for import ${long.id} of users to finish: imports of one resource write one at a time.`,
      since: null,
      blocked_by: long.id,
    })
    t.equal(
      await countRows(app, "select 1 from pg_locks where locktype = 'advisory' and not granted"),
      0,
      'no connection waits for the resource lock',
    )

    // The other slot is free: an import of another resource runs meanwhile and completes.
    const article = await startImport(
      app,
      'articles',
      `slug,title,body,author_id,status\nbeside-it,T,B,${authorRow?.id},draft\n`,
    )
    t.equal((await waitForImport(app, article.id)).status, 'completed', 'another resource runs beside it')
    t.equal((await importJob(app, long.id)).status, 'running', 'while the long import still runs')

    const cancelled = await app.inject({ method: 'POST', url: `/api/v1/imports/${behind.id}/cancel` })
    t.equal(cancelled.statusCode, 202)
    t.equal(cancelled.json<ImportJob>().status, 'cancelled', 'cancelled at once')
    t.equal((await waitForImport(app, long.id)).status, 'completed')
    t.equal(
      await countRows(app, "select 1 from users where email like 'behind%'"),
      0,
      'the cancelled job wrote nothing',
    )
  },
)

t.test('a job that queued behind another starts once that one finishes', async (t) => {
  const app = await buildTestApp(t, { environment: { BATCH_SIZE: '100' } })
  app.jobs.start()
  const first = await startImport(app, 'users', await generated({ resource: 'users', format: 'csv', rows: 20_000 }))
  const second = await startImport(app, 'users', usersCsv(10, { prefix: 'second' }))
  const done = await waitForImport(app, second.id)
  t.equal(done.status, 'completed')
  t.equal(done.progress.waiting, null)
  const firstJob = await importJob(app, first.id)
  t.equal(firstJob.status, 'completed')
  t.ok(
    new Date(done.started_at ?? 0) >= new Date(firstJob.started_at ?? 0),
    'the second started after the first had its turn',
  )
  t.equal(await countRows(app, 'select 1 from users'), 20_010)
})

t.test('a cancel accepted while a job runs: nothing is committed after it', async (t) => {
  const app = await buildTestApp(t, { environment: { BATCH_SIZE: '50' } })
  app.jobs.start()
  const created = await startImport(app, 'users', await generated({ resource: 'users', format: 'csv', rows: 50_000 }))
  await until(
    async () => ((await importJob(app, created.id)).counters.processed >= 500 ? true : undefined),
    'a few batches',
  )
  const response = await app.inject({ method: 'POST', url: `/api/v1/imports/${created.id}/cancel` })
  t.equal(response.statusCode, 202)
  const accepted = response.json<ImportJob>()
  const final = await waitForImport(app, created.id)
  t.equal(final.status, 'cancelled')
  t.same(final.counters, accepted.counters, 'the counters are those at the moment the cancel was accepted')
  t.equal(await countRows(app, 'select 1 from users'), accepted.counters.inserted, 'and so are the rows')
})

t.test('a batch waiting on rows another transaction locks shows it; a cancel ends the job promptly', async (t) => {
  const { app, other } = await appWithLockedUser(t, { prefix: 'locked', seeded: 1, locked: 1 })
  // The first batch updates the locked row: it cannot commit while the lock is held.
  const created = await startImport(app, 'users', usersCsv(30, { prefix: 'locked' }))
  const waiting = await until(async () => {
    const body = await importJob(app, created.id)
    return body.progress.waiting ? body : undefined
  }, 'the job to show that it waits')
  t.equal(waiting.status, 'running')
  t.match(waiting.progress.waiting, {
    reason: 'row_locks',
    detail: /another transaction keeps locked/,
    since: /^\d{4}-\d\d-\d\dT/,
  })
  t.equal(waiting.counters.processed, 0)

  const asked = Date.now()
  const response = await app.inject({ method: 'POST', url: `/api/v1/imports/${created.id}/cancel` })
  t.equal(response.statusCode, 202)
  const final = await waitForImport(app, created.id)
  const seconds = (Date.now() - asked) / 1000
  t.equal(final.status, 'cancelled')
  t.ok(seconds < 5, `cancelled while the lock is still held (${seconds} s)`)
  t.equal(final.counters.processed, 0, 'nothing committed')
  t.equal(final.progress.waiting, null, 'no longer waiting')
  await other`rollback`
  other.release()
  t.equal(await countRows(app, 'select 1 from users'), 1, 'no row written')
})

t.test('a cancel stops a URL import while it downloads', async (t) => {
  // A server that sends the start of a file, then nothing: the download would run until its timeout.
  const server = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'text/csv' })
    response.write('email,name,role\n')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const app = await buildTestApp(t, { environment: { IMPORT_URL_ALLOW_PRIVATE: 'true' } })
  app.jobs.start()
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/users.csv`
  const created = (
    await app.inject({ method: 'POST', url: '/api/v1/imports', payload: { resource: 'users', url } })
  ).json<ImportJob>()
  await until(async () => ((await importJob(app, created.id)).status === 'running' ? true : undefined), 'the download')
  const asked = Date.now()
  await app.inject({ method: 'POST', url: `/api/v1/imports/${created.id}/cancel` })
  const final = await waitForImport(app, created.id)
  t.equal(final.status, 'cancelled')
  t.ok((Date.now() - asked) / 1000 < 5, 'promptly')
})
