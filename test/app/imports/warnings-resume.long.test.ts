import t from 'tap'
import type { ImportJob } from '../../../schemas/imports.ts'
import { createTestDatabase } from '../../db.ts'
import { buildTestApp, uploadImport, waitForImport } from '../../helper.ts'

// A job's warnings survive a resume: a job taken up again from its checkpoint after a shutdown
// still names the unknown fields it saw before (a shutdown and a second service: `make test-long`).

const user = (index: number, extra = '') =>
  `{"email":"u${index}@example.com","name":"U${index}","role":"reader"${extra}}`

t.test('unknown keys seen before a job was handed back are still named after it resumes', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const first = await buildTestApp(t, { databaseUrl, environment: { BATCH_SIZE: '10' } })
  const lines = Array.from({ length: 20_000 }, (_, index) =>
    user(index, index < 5 ? `,"early_${index}":1` : index === 19_990 ? ',"late":1' : ''),
  )
  const created = await uploadImport(first, { resource: 'users', file: `${lines.join('\n')}\n`, filename: 'u.ndjson' })
  const id = created.json<ImportJob>().id
  first.jobs.start()
  // Let it commit a few batches, then shut down: the job goes back to the queue at its checkpoint.
  for (;;) {
    const job = (await first.inject({ url: `/api/v1/imports/${id}` })).json<ImportJob>()
    if (job.counters.processed >= 100) break
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  await first.close()

  const second = await buildTestApp(t, { databaseUrl })
  const [row] = await second.sql<{ status: string; processed: string }[]>`
    select status, processed from import_jobs where id = ${id}`
  t.equal(row?.status, 'queued', 'handed back at shutdown')
  t.ok(Number(row?.processed) < 20_000, `stopped part-way (${row?.processed} of 20000)`)
  second.jobs.start()
  const job = await waitForImport(second, id)
  t.equal(job.status, 'completed')
  t.equal(job.counters.processed, 20_000)
  t.same(job.warnings, ['unknown fields ignored: early_0, early_1, early_2, early_3, early_4, late'])
})
