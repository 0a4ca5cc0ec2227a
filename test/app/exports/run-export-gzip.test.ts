import { setTimeout as sleep } from 'node:timers/promises'
import { gunzipSync } from 'node:zlib'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import type { ExportJob } from '../../../schemas/exports.ts'
import { buildTestApp } from '../../helper.ts'

// Issue 8, finding 11: async exports with compression gzip stalled like gzip streams (the same
// COPY path) and stayed `running`. Files of 10,000 rows span many chunks, where the stall showed.

const ROWS = 10_000
const REPETITIONS = 20

async function waitForExport(app: FastifyInstance, id: string, timeoutMs: number): Promise<ExportJob> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const job = (await app.inject({ url: `/api/v1/exports/${id}` })).json<ExportJob>()
    if (job.done || Date.now() > deadline) return job
    await sleep(25)
  }
}

t.test(`${REPETITIONS} gzip exports of ${ROWS} users in a row each complete with the whole file`, async (t) => {
  const app = await buildTestApp(t, { environment: { JOB_POLL_INTERVAL_MS: '100' } })
  await app.sql`
    insert into users (email, name, role, active)
    select 'user' || g || '@example.com', 'User ' || g, 'reader', g % 2 = 0
    from generate_series(1, ${ROWS}) g`
  app.jobs.start()
  const plain = (await app.inject({ url: '/api/v1/exports/users/stream?format=ndjson' })).body

  const failures: string[] = []
  for (let attempt = 1; attempt <= REPETITIONS; attempt++) {
    const created = await app.inject({
      method: 'POST',
      url: '/api/v1/exports',
      payload: { resource: 'users', format: 'ndjson', compression: 'gzip' },
    })
    const job = await waitForExport(app, created.json<ExportJob>().id, 15_000)
    if (job.status !== 'completed') {
      failures.push(`attempt ${attempt}: ${job.status} after 15 s with ${job.counters.rows} rows`)
      continue
    }
    const file = await app.inject({ url: `/api/v1/exports/${job.id}/download` })
    if (gunzipSync(file.rawPayload).toString() !== plain || job.counters.rows !== ROWS)
      failures.push(`attempt ${attempt}: the file differs from the plain stream`)
  }
  t.same(failures, [], 'every job completed with every row')
})
