import type { FastifyInstance } from 'fastify'
import t from 'tap'
import type { ImportJob } from '../../schemas/imports.ts'
import { problemTypeUri } from '../../schemas/problem.ts'
import { buildTestApp, generated, uploadImport, waitForImport } from '../helper.ts'

// The job runner when a job kills the thread that runs it: the job is tried again in a thread of
// its own, at most JOB_MAX_ATTEMPTS times, then fails with attempts_exhausted; the jobs that
// shared the thread with it resume and end exactly as they would have.

async function upload(app: FastifyInstance, resource: string, file: Buffer | string, filename: string) {
  const response = await uploadImport(app, { resource, file, filename })
  if (response.statusCode !== 202) throw new Error(`upload refused: ${response.statusCode} ${response.body}`)
  return response.json<ImportJob>()
}

t.test('a job that kills its thread fails after JOB_MAX_ATTEMPTS; the job beside it completes exactly', async (t) => {
  const app = await buildTestApp(t, {
    environment: { JOB_MAX_ATTEMPTS: '3', BATCH_SIZE: '100', JOB_LEASE_SECONDS: '5' },
    faults: { exitJobThreadOnSourceFilename: 'poison.csv' },
  })
  app.jobs.start()
  const beside = await upload(
    app,
    'users',
    await generated({ resource: 'users', format: 'csv', rows: 30_000, seed: 3 }),
    'users.csv',
  )
  for (;;) {
    const job = (await app.inject({ url: `/api/v1/imports/${beside.id}` })).json<ImportJob>()
    if (job.counters.processed > 0) break
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  const poison = await upload(
    app,
    'articles',
    'slug,title,body,author_id,status\nx,T,B,00000000-0000-4000-8000-000000000000,draft\n',
    'poison.csv',
  )

  const failed = await waitForImport(app, poison.id)
  t.equal(failed.status, 'failed')
  t.same(failed.error, {
    type: problemTypeUri('attempts_exhausted'),
    title: 'Job attempts exhausted',
    status: 500,
    detail:
      "The job's runs ended abnormally 3 times (JOB_MAX_ATTEMPTS): the process or the job thread running it died each time. It is not tried again; the service's log has the details of each run.",
    code: 'attempts_exhausted',
  })
  const [attempts] = await app.sql<{ attempts: number }[]>`select attempts from import_jobs where id = ${poison.id}`
  t.equal(attempts?.attempts, 3, 'it ran three times')

  const done = await waitForImport(app, beside.id)
  t.equal(done.status, 'completed', 'the job that shared its thread completes')
  t.same(done.counters, { processed: 30_000, inserted: 30_000, updated: 0, failed: 0 })
  const [users] = await app.sql<{ count: number }[]>`select count(*)::int as count from users`
  t.equal(users?.count, 30_000, 'exactly once each')
  const [innocent] = await app.sql<{ attempts: number }[]>`select attempts from import_jobs where id = ${beside.id}`
  t.ok((innocent?.attempts ?? 0) <= 2, `taken down once at most (${innocent?.attempts} runs)`)
})

t.test('a job handed back at shutdown does not count as an attempt', async (t) => {
  const first = await buildTestApp(t, { environment: { JOB_MAX_ATTEMPTS: '1', BATCH_SIZE: '50' } })
  const databaseUrl = first.database.url
  const created = await upload(
    first,
    'users',
    await generated({ resource: 'users', format: 'csv', rows: 20_000 }),
    'users.csv',
  )
  first.jobs.start()
  for (;;) {
    const job = (await first.inject({ url: `/api/v1/imports/${created.id}` })).json<ImportJob>()
    if (job.counters.processed > 0) break
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  await first.close()
  const second = await buildTestApp(t, { databaseUrl, environment: { JOB_MAX_ATTEMPTS: '1' } })
  second.jobs.start()
  const done = await waitForImport(second, created.id)
  t.equal(done.status, 'completed', 'the second run is not refused as a second attempt')
  t.equal(done.counters.processed, 20_000)
})
