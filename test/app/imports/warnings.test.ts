import t from 'tap'
import type { ImportJob } from '../../../schemas/imports.ts'
import { createTestDatabase } from '../../db.ts'
import { buildTestApp, importAndWait, uploadImport, waitForImport } from '../../helper.ts'

// A job's warnings stay small whatever the file holds (the unknown field names are listed up to
// a bound), and they survive a resume: a job taken up again from its checkpoint still names what
// it saw before.

const user = (index: number, extra = '') =>
  `{"email":"u${index}@example.com","name":"U${index}","role":"reader"${extra}}`

t.test('20,000 distinct unknown keys give one warning with the first 100 names, not 20,000', async (t) => {
  const app = await buildTestApp(t)
  app.jobs.start()
  const lines = Array.from({ length: 20_000 }, (_, index) => user(index, `,"extra_${index}":1`))
  const job = await importAndWait(app, { resource: 'users', file: `${lines.join('\n')}\n`, filename: 'u.ndjson' })
  t.equal(job.status, 'completed')
  t.equal(job.counters.processed, 20_000)
  t.equal(job.warnings.length, 1, 'one warning')
  const [warning = ''] = job.warnings
  const names = warning
    .replace(/^unknown fields ignored: /, '')
    .replace(/ \(.*\)$/, '')
    .split(', ')
  t.equal(names.length, 100, 'the first 100 names')
  t.same([...names].sort(), Array.from({ length: 100 }, (_, index) => `extra_${index}`).sort(), 'the first ones met')
  t.match(warning, /\(and more: only the first 100 names are listed\)$/, 'says there are more')
  const [row] = await app.sql<{ bytes: number }[]>`
    select pg_column_size(warnings) + pg_column_size(unknown_fields) as bytes from import_jobs where id = ${job.id}`
  t.ok((row?.bytes ?? 0) < 4096, `the stored warnings are small (${row?.bytes} bytes)`)
})

t.test('a CSV header with 5,000 unknown columns gives one bounded warning', async (t) => {
  const app = await buildTestApp(t)
  app.jobs.start()
  const extra = Array.from({ length: 5000 }, (_, index) => `column_${index}`)
  const header = ['email', 'name', 'role', ...extra].join(',')
  const row = ['a@example.com', 'A', 'reader', ...extra.map(() => '')].join(',')
  const job = await importAndWait(app, { resource: 'users', file: `${header}\n${row}\n`, filename: 'u.csv' })
  t.equal(job.status, 'completed')
  t.equal(job.warnings.length, 1)
  t.ok((job.warnings[0]?.length ?? 0) < 2000, 'the warning is short')
  t.match(
    job.warnings[0],
    /^unknown fields ignored: column_0, column_1, .* \(and more: only the first 100 names are listed\)$/,
  )
})

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
