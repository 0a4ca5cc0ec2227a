import t from 'tap'
import { buildTestApp, importAndWait } from '../../helper.ts'

// A job's warnings stay small whatever the file holds (the unknown field names are listed up to
// a bound). That they survive a resume is warnings-resume.long.test.ts.

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
