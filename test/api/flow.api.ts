import { randomUUID } from 'node:crypto'
import { parse as parseCsv } from 'csv-parse/sync'
import t from 'tap'
import {
  createClient,
  dataOf,
  type ExportJob,
  type ImportEvent,
  importEvents,
  streamExport,
  uploadImport,
  waitForImport,
} from '../../client/index.ts'

// `make test-api`: the API as a client program meets it, against a service that already runs
// (API_URL, default http://127.0.0.1:8080; API_KEY when the service has API_KEYS), through the
// generated client. Everything it creates is named after this run, so it can run again and beside
// other users; it leaves the service as usable as it found it.

const baseUrl = process.env.API_URL ?? 'http://127.0.0.1:8080'
const client = createClient({ baseUrl, apiKey: process.env.API_KEY || undefined })
const run = randomUUID().slice(0, 8)
const email = (index: number) => `api-${run}-${index}@example.com`

t.test(`the import, fix and export round of one team (service at ${baseUrl})`, async (t) => {
  const ready = await fetch(`${baseUrl}/ready`)
  t.equal(ready.status, 200, 'the service is ready')

  // 1. An import with two bad records, through an upload.
  const rows = ['email,name,role']
  for (let index = 1; index <= 50; index++) rows.push(`${email(index)},API User ${index},reader`)
  rows.push(`api-${run}-bad-email,Bad Email,reader`)
  rows.push(`${email(51)},Bad Role,boss`)
  const created = await uploadImport(client, {
    resource: 'users',
    file: new Blob([`${rows.join('\n')}\n`]),
    filename: `api-${run}.csv`,
    idempotencyKey: `api-${run}-first`,
  })
  t.equal(created.status, 'queued')

  // 2. Its status, then its live events until it is done.
  const status = dataOf(await client.GET('/api/v1/imports/{id}', { params: { path: { id: created.id } } }))
  t.equal(status.id, created.id)
  const events: ImportEvent[] = []
  for await (const event of importEvents(client, created.id)) events.push(event)
  const done = events.at(-1)
  t.equal(done?.event, 'done', 'the events end with done')
  t.ok(
    events.slice(0, -1).every((event) => event.event === 'progress'),
    'progress events before it',
  )
  t.equal(done?.job.status, 'completed')
  t.same(done?.job.counters, { processed: 52, inserted: 50, updated: 0, failed: 2 })

  // 3. Its errors, one per bad record, then the failed records as uploaded.
  const errors = dataOf(
    await client.GET('/api/v1/imports/{id}/errors', { params: { path: { id: created.id } }, parseAs: 'text' }),
  )
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { record: number; field: string; code: string })
  t.same(
    errors.map((error) => [error.record, error.field, error.code]),
    [
      [51, 'email', 'invalid_format'],
      [52, 'role', 'invalid_value'],
    ],
  )
  const failed = dataOf(
    await client.GET('/api/v1/imports/{id}/failed-records', {
      params: { path: { id: created.id } },
      parseAs: 'text',
    }),
  )
  t.equal(failed, `email,name,role\napi-${run}-bad-email,Bad Email,reader\n${email(51)},Bad Role,boss\n`)

  // 4. Fixed and imported again: no failure left.
  const fixed = failed.replace(`api-${run}-bad-email`, email(52)).replace(',boss', ',editor')
  const again = await uploadImport(client, {
    resource: 'users',
    file: new Blob([fixed]),
    filename: `api-${run}-fixed.csv`,
  })
  const final = await waitForImport(client, again.id)
  t.same(final.counters, { processed: 2, inserted: 2, updated: 0, failed: 0 })

  // 5. A stream export of what this run wrote (the users changed since the first job was made).
  const since = created.created_at
  const streamed = await streamExport(client, {
    resource: 'users',
    format: 'csv',
    fields: ['email', 'role'],
    filters: { updated_after: since },
  })
  t.equal(streamed.status, 200)
  const streamedRows = (parseCsv(await streamed.text(), { columns: true }) as { email: string; role: string }[]).filter(
    (row) => row.email.startsWith(`api-${run}-`),
  )
  t.equal(streamedRows.length, 52, 'every user of this run, once')
  t.same(
    streamedRows.find((row) => row.email === email(51)),
    { email: email(51), role: 'editor' },
  )

  // 6. The same as an async export, then its download, whole and by Range.
  const exportJob = dataOf(
    await client.POST('/api/v1/exports', {
      body: { resource: 'users', format: 'ndjson', filters: { updated_after: since } },
    }),
  ) as ExportJob
  let finished = exportJob
  for (let tries = 0; !finished.done && tries < 600; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    finished = dataOf(await client.GET('/api/v1/exports/{id}', { params: { path: { id: exportJob.id } } })) as ExportJob
  }
  t.equal(finished.status, 'completed')
  const whole = await client.GET('/api/v1/exports/{id}/download', {
    params: { path: { id: exportJob.id } },
    parseAs: 'arrayBuffer',
  })
  t.equal(whole.response.status, 200)
  const file = Buffer.from(dataOf(whole) as ArrayBuffer)
  t.equal(file.length, finished.counters.bytes, 'the file has the bytes the job counted')
  const lines = file.toString('utf8').trim().split('\n')
  t.equal(lines.filter((line) => line.includes(`"api-${run}-`)).length, 52)
  const part = await client.GET('/api/v1/exports/{id}/download', {
    params: { path: { id: exportJob.id }, header: { range: 'bytes=10-99' } as never },
    parseAs: 'arrayBuffer',
  })
  t.equal(part.response.status, 206)
  t.equal(part.response.headers.get('content-range'), `bytes 10-99/${file.length}`)
  t.same(Buffer.from(part.data as ArrayBuffer), file.subarray(10, 100), 'the range is those bytes of the file')

  // 7. The same idempotency key and payload replay the first job; the service still serves.
  const replay = await uploadImport(client, {
    resource: 'users',
    file: new Blob([`${rows.join('\n')}\n`]),
    filename: `api-${run}.csv`,
    idempotencyKey: `api-${run}-first`,
  })
  t.equal(replay.id, created.id, 'the same key and payload give the same job')
  t.equal((await fetch(`${baseUrl}/ready`)).status, 200, 'and the service is still ready')
})
