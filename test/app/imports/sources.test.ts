import { gzipSync } from 'node:zlib'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { problemTypeUri } from '../../../schemas/problem.ts'
import { buildTestApp, countRows, importAndWait, uploadImport, usersCsv } from '../../helper.ts'

// Sources that turn out bad after their upload was accepted: a gzip file corrupt past the part
// inspected at upload ends its job with a documented problem, the batches before it committed
// and reported; a format that contradicts the content is named in a warning.

async function startedApp(t: Test, environment: Record<string, string> = {}): Promise<FastifyInstance> {
  const app = await buildTestApp(t, { environment })
  app.jobs.start()
  return app
}

t.test('a gzip upload cut in the middle fails its job with source_corrupt; earlier batches stay', async (t) => {
  const app = await startedApp(t, { BATCH_SIZE: '100' })
  const whole = gzipSync(usersCsv(20_000))
  const cut = whole.subarray(0, Math.floor(whole.length / 2))
  const job = await importAndWait(app, { resource: 'users', file: cut, filename: 'users.csv.gz' })
  t.equal(job.status, 'failed')
  t.match(job.error, {
    type: problemTypeUri('source_corrupt'),
    code: 'source_corrupt',
    status: 422,
    title: 'Import source corrupt',
  })
  t.match(
    (job.error as { detail: string }).detail,
    /^The source cannot be read past byte \d+ \(the gzip data is cut short: unexpected end of file\)\. The \d+ records before it are imported; fix the file and import the rest again\.$/,
  )
  const { processed, inserted, updated, failed } = job.counters
  t.ok(processed > 1000 && processed < 20_000, `the records before the cut were processed (${processed})`)
  t.equal(processed, inserted + updated + failed)
  t.equal(failed, 0)
  t.equal(await countRows(app, 'users'), inserted, 'the committed batches stay')
  t.ok((job.error as { detail: string }).detail.includes(` ${processed} records`), 'the detail counts them')
})

t.test('a gzip upload whose checksum fails at its end fails its job with source_corrupt', async (t) => {
  const app = await startedApp(t, { BATCH_SIZE: '500' })
  const corrupt = Buffer.from(gzipSync(usersCsv(20_000)))
  corrupt.fill(0, Math.floor(corrupt.length * 0.6), Math.floor(corrupt.length * 0.6) + 16)
  const job = await importAndWait(app, { resource: 'users', file: corrupt, filename: 'users.csv.gz' })
  t.equal(job.status, 'failed')
  t.match(job.error, { code: 'source_corrupt', status: 422 })
  t.match((job.error as { detail: string }).detail, /\(the gzip data is corrupt: incorrect data check\)/)
  const { processed, inserted, updated, failed } = job.counters
  t.equal(processed, inserted + updated + failed)
  t.ok(processed > 0 && processed <= 20_000, `processed ${processed}`)
  t.equal(await countRows(app, 'users'), inserted)
})

t.test('a CSV file sent as format=ndjson completes with a warning that names the likely format', async (t) => {
  const app = await startedApp(t)
  const job = await importAndWait(app, {
    resource: 'users',
    file: usersCsv(3),
    filename: 'users.csv',
    format: 'ndjson',
  })
  t.equal(job.status, 'completed')
  t.same(job.counters, { processed: 4, inserted: 0, updated: 0, failed: 4 })
  t.same(job.warnings, [
    'the content looks like csv, not ndjson (the format the request gave): records that do not parse may come from the wrong format',
  ])
})

t.test(
  'NDJSON content in a file named .csv: the refusal names the likely format and where the other came from',
  async (t) => {
    const app = await startedApp(t)
    const file =
      '{"email":"a@example.com","name":"A","role":"reader"}\n{"email":"b@example.com","name":"B","role":"reader"}\n'
    const response = await uploadImport(app, { resource: 'users', file, filename: 'users.csv' })
    t.equal(response.statusCode, 422)
    t.match(
      response.json().detail,
      /^The CSV header cannot be read: .*; the content looks like ndjson, not csv \(the format the file name gave\)\.$/,
    )
  },
)

t.test('content that matches its format, or a format sniffed from the content, gets no such warning', async (t) => {
  const app = await startedApp(t)
  const csv = await importAndWait(app, { resource: 'users', file: usersCsv(2), filename: 'users.csv', format: 'csv' })
  t.same(csv.warnings, [])
  const sniffed = await importAndWait(app, {
    resource: 'users',
    file: '[{"email":"x@example.com","name":"X","role":"reader"}]',
    filename: 'upload',
  })
  t.equal(sniffed.format, 'json')
  t.same(sniffed.warnings, [])
})
