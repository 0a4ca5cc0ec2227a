import { randomUUID } from 'node:crypto'
import { readdir, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import type { ExportJob } from '../../../schemas/exports.ts'
import { createTestDatabase } from '../../db.ts'
import { buildTestApp } from '../../helper.ts'

// Async exports on the job runner (issue 4): a job whose owner died is taken over after its lease
// and starts again; a shutdown hands a running export back to the queue without a partial file.

async function seedUsers(app: FastifyInstance, count: number): Promise<void> {
  await app.sql`
    insert into users (email, name, role)
    select 'user' || g || '@example.com', 'User ' || g, 'reader' from generate_series(1, ${count}) g`
}

async function jobRow(app: FastifyInstance, id: string) {
  const [row] = await app.sql<{ status: string; attempts: number; lease_owner: string | null }[]>`
    select status, attempts, lease_owner from export_jobs where id = ${id}`
  return row
}

t.test('a running export whose owner died is taken over after its lease and completes', async (t) => {
  const app = await buildTestApp(t, { environment: { JOB_POLL_INTERVAL_MS: '100' } })
  await seedUsers(app, 500)
  const created = await app.inject({
    method: 'POST',
    url: '/api/v1/exports',
    payload: { resource: 'users', format: 'csv' },
  })
  const { id } = created.json<ExportJob>()
  // As a process that claimed the job, wrote part of its file, and died would leave it.
  await app.sql`
    update export_jobs set status = 'running', lease_owner = 'dead-host:1:abc', attempts = 1,
      started_at = now(), lease_expires_at = now() - interval '1 second'
    where id = ${id}`
  await writeFile(path.join(app.storage.exportDir, `${id}.csv.${randomUUID()}.partial`), 'id,email\nhalf a row')

  app.jobs.start()
  let job = (await app.inject({ url: `/api/v1/exports/${id}` })).json<ExportJob>()
  for (let attempt = 0; attempt < 200 && !job.done; attempt++) {
    await sleep(50)
    job = (await app.inject({ url: `/api/v1/exports/${id}` })).json<ExportJob>()
  }
  t.equal(job.status, 'completed')
  t.equal(job.counters.rows, 500)
  t.match(await jobRow(app, id), { attempts: 2, lease_owner: null })
  t.same(await readdir(app.storage.exportDir), [`${id}.csv`], 'the dead owner’s partial file is gone')
  const download = await app.inject({ url: `/api/v1/exports/${id}/download` })
  t.equal(download.body.trimEnd().split('\n').length, 501, 'a header and every row')
})

t.test('a shutdown hands a running export back to the queue and leaves no partial file', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const first = await buildTestApp(t, { databaseUrl, environment: { EXPORT_GZIP_LEVEL: '9' } })
  await seedUsers(first, 400_000)
  const created = await first.inject({
    method: 'POST',
    url: '/api/v1/exports',
    payload: { resource: 'users', format: 'json', compression: 'gzip' },
  })
  const { id } = created.json<ExportJob>()
  first.jobs.start()
  for (let attempt = 0; attempt < 200 && (await jobRow(first, id))?.status !== 'running'; attempt++) await sleep(10)
  await sleep(200)
  const exportDir = first.storage.exportDir
  await first.close()

  const second = await buildTestApp(t, { databaseUrl })
  t.match(await jobRow(second, id), { status: 'queued', lease_owner: null }, 'back in the queue')
  t.same(await readdir(exportDir), [], 'no partial file left')
})

t.test('an export whose file cannot be written fails with a problem, instead of going round again', async (t) => {
  const app = await buildTestApp(t, { environment: { JOB_POLL_INTERVAL_MS: '100' } })
  await seedUsers(app, 200)
  // The export directory goes away under the service: every file it opens there fails.
  await rm(app.storage.exportDir, { recursive: true, force: true })
  const created = await app.inject({
    method: 'POST',
    url: '/api/v1/exports',
    payload: { resource: 'users', format: 'csv' },
  })
  const { id } = created.json<ExportJob>()
  app.jobs.start()
  let job = created.json<ExportJob>()
  for (let tries = 0; !job.done && tries < 200; tries++) {
    await sleep(50)
    job = (await app.inject({ url: `/api/v1/exports/${id}` })).json<ExportJob>()
  }
  t.equal(job.status, 'failed')
  t.match(job.error, {
    code: 'internal_error',
    detail: 'The export file could not be written (ENOENT); the log has the details.',
  })
  t.equal((await jobRow(app, id))?.attempts, 1, 'it ran once')
})
