import { createHash } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import { parse as parseCsv } from 'csv-parse/sync'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import type { ImportJob } from '../../schemas/imports.ts'
import {
  assertProblem,
  buildTestApp,
  countRows,
  generated,
  importAndWait,
  uploadImport,
  usersCsv,
  waitForImport,
} from '../helper.ts'

// The import job API (docs/contract.md §6): create, follow, list, errors, failed records, events, cancel,
// dry runs and URL imports.

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const isoTimestamp = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

function sha256(bytes: Buffer | string): string {
  return createHash('sha256').update(bytes).digest('hex')
}

async function startedApp(t: Test, environment: Record<string, string> = {}): Promise<FastifyInstance> {
  const app = await buildTestApp(t, { environment })
  app.jobs.start()
  return app
}

// ---------------------------------------------------------------------------------------------
// Create and follow

t.test('an upload answers 202 with Location and the queued job in the docs/contract.md §6 shape', async (t) => {
  const app = await buildTestApp(t)
  const file = usersCsv(3)
  const response = await uploadImport(app, { resource: 'users', file, filename: 'people.csv' })
  t.equal(response.statusCode, 202)
  const body = response.json<ImportJob>()
  t.match(body.id, uuid)
  t.equal(response.headers.location, `/api/v1/imports/${body.id}`)
  t.match(body.created_at, isoTimestamp)
  t.same(body, {
    id: body.id,
    resource: 'users',
    format: 'csv',
    status: 'queued',
    done: false,
    dry_run: false,
    source: {
      type: 'upload',
      filename: 'people.csv',
      url: null,
      size_bytes: Buffer.byteLength(file),
      sha256: sha256(file),
    },
    created_at: body.created_at,
    started_at: null,
    finished_at: null,
    counters: { processed: 0, inserted: 0, updated: 0, failed: 0 },
    progress: {
      bytes_read: 0,
      bytes_total: Buffer.byteLength(file),
      percent: 0,
      rows_per_second: null,
      eta_seconds: null,
      waiting: null,
    },
    warnings: [],
    errors: [],
    errors_url: `/api/v1/imports/${body.id}/errors`,
    failed_records_url: `/api/v1/imports/${body.id}/failed-records`,
    error: null,
  })
})

t.test('GET :id follows a job to completed with processed = inserted + updated + failed', async (t) => {
  const app = await startedApp(t, { BATCH_SIZE: '3' })
  // 6 new users, one of them sent again (an update), and two invalid records.
  const file = `${usersCsv(6).trimEnd()}\nuser2@example.com,User Two,editor\nnot-an-email,X,reader\nuser9@example.com,Y,boss\n`
  const created = (await uploadImport(app, { resource: 'users', file })).json<ImportJob>()
  const seen = new Set<string>()
  const broken: ImportJob['counters'][] = []
  let job = created
  for (;;) {
    const { processed, inserted, updated, failed } = job.counters
    if (processed !== inserted + updated + failed) broken.push(job.counters)
    seen.add(job.status)
    if (job.done) break
    job = (await app.inject({ url: `/api/v1/imports/${created.id}` })).json<ImportJob>()
  }
  t.same(broken, [], 'the invariant held at every poll')
  t.ok(seen.has('queued'), 'seen queued before it finished')
  t.equal(job.status, 'completed')
  t.same(job.counters, { processed: 9, inserted: 6, updated: 1, failed: 2 })
  t.equal(job.progress.percent, 100)
  t.equal(job.progress.bytes_read, Buffer.byteLength(file))
  t.match(job.started_at, isoTimestamp)
  t.match(job.finished_at, isoTimestamp)
  t.equal(await countRows(app, 'users'), 6)
})

t.test('errors holds the first 20 per-record errors, in record order', async (t) => {
  const app = await startedApp(t, { BATCH_SIZE: '4' })
  const rows = ['email,name,role']
  const badRecords: number[] = []
  for (let record = 1; record <= 60; record++) {
    const bad = record % 2 === 0
    if (bad) badRecords.push(record)
    rows.push(bad ? `bad${record},Bad,reader` : `ok${record}@example.com,Ok,reader`)
  }
  const job = await importAndWait(app, { resource: 'users', file: `${rows.join('\n')}\n` })
  t.same(job.counters, { processed: 60, inserted: 30, updated: 0, failed: 30 })
  t.equal(job.errors.length, 20)
  t.same(
    job.errors,
    badRecords.slice(0, 20).map((record) => ({
      line: record + 1,
      record,
      field: 'email',
      code: 'invalid_format',
      message: 'must be an email address (local@domain.tld)',
      value: `bad${record}`,
    })),
  )
})

t.test('a record with several failing fields lists every error and counts once in failed', async (t) => {
  const app = await startedApp(t)
  const job = await importAndWait(app, { resource: 'users', file: 'email,name,role\nnope, ,boss\n' })
  t.same(job.counters, { processed: 1, inserted: 0, updated: 0, failed: 1 })
  t.same(
    job.errors.map((error) => [error.record, error.field, error.code]),
    [
      [1, 'email', 'invalid_format'],
      [1, 'name', 'required'],
      [1, 'role', 'invalid_value'],
    ],
  )
})

// ---------------------------------------------------------------------------------------------
// List

/** Creates a queued job (the runner is not started) and returns its id. */
async function queuedJob(app: FastifyInstance, resource: 'users' | 'articles', index: number): Promise<string> {
  const file =
    resource === 'users'
      ? `email,name,role\nlist${index}@example.com,L,reader\n`
      : `slug,title,body,author_id,status\nlist-${index},T,B,${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)},draft\n`
  const response = await uploadImport(app, { resource, file })
  if (response.statusCode !== 202) throw new Error(`upload refused: ${response.body}`)
  return response.json<ImportJob>().id
}

t.test('GET /api/v1/imports filters by status and by resource, newest first', async (t) => {
  const app = await buildTestApp(t)
  const users = [await queuedJob(app, 'users', 1), await queuedJob(app, 'users', 2), await queuedJob(app, 'users', 3)]
  const articles = [await queuedJob(app, 'articles', 4), await queuedJob(app, 'articles', 5)]
  t.equal((await app.inject({ method: 'POST', url: `/api/v1/imports/${users[1]}/cancel` })).statusCode, 202)
  const ids = async (query: string) =>
    (await app.inject({ url: `/api/v1/imports?${query}` })).json<{ items: ImportJob[] }>().items.map((job) => job.id)

  t.same(await ids('resource=articles'), articles.toReversed())
  t.same(await ids('status=cancelled'), [users[1]])
  t.same(await ids('status=queued&resource=users'), [users[2], users[0]])
  t.same(await ids('status=completed'), [])
  t.same(await ids(''), [...users, ...articles].toReversed())
})

t.test('an unknown status filter answers a 400 validation problem', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({ url: '/api/v1/imports?status=done' })
  assertProblem(
    t,
    response,
    'validation_failed',
    'querystring.status must be one of queued, running, completed, failed, cancelled.',
    {
      errors: [
        {
          in: 'querystring',
          name: 'status',
          pointer: '/status',
          reason: 'must be one of queued, running, completed, failed, cancelled',
        },
      ],
    },
  )
})

/** Walks every page of the job list; returns the ids in order and the page sizes. */
async function walkPages(app: FastifyInstance, limit: number): Promise<{ ids: string[]; sizes: number[] }> {
  const ids: string[] = []
  const sizes: number[] = []
  let cursor: string | null = null
  do {
    const query: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''
    const response = await app.inject({ url: `/api/v1/imports?limit=${limit}${query}` })
    const page = response.json<{ items: ImportJob[]; next_cursor: string | null }>()
    ids.push(...page.items.map((job) => job.id))
    sizes.push(page.items.length)
    cursor = page.next_cursor
  } while (cursor && sizes.length < 20)
  return { ids, sizes }
}

t.test('cursor pagination walks every job once, newest first', async (t) => {
  const app = await buildTestApp(t)
  const created: string[] = []
  for (let index = 1; index <= 5; index++) created.push(await queuedJob(app, 'users', index))
  const { ids, sizes } = await walkPages(app, 2)
  t.same(sizes, [2, 2, 1])
  t.same(ids, created.toReversed(), 'no job twice, none missing, newest first')
})

t.test('cursor pagination loses no job when several were created within one millisecond', async (t) => {
  const app = await buildTestApp(t)
  const created: string[] = []
  for (let index = 1; index <= 5; index++) created.push(await queuedJob(app, 'users', index))
  // A burst of jobs: created_at differs in the microseconds only (PostgreSQL keeps them).
  for (const [index, id] of created.entries()) {
    await app.sql`update import_jobs set created_at = ${`2030-01-01T00:00:00.123${100 + index}Z`}::text::timestamptz
      where id = ${id}`
  }
  const { ids } = await walkPages(app, 2)
  t.same(ids, created.toReversed())
})

t.test('a cursor the service did not give out answers a 400 problem', async (t) => {
  const app = await buildTestApp(t)
  const id = '6f1c2a4e-8d3b-4c5a-9e7f-0a1b2c3d4e5f'
  for (const text of [
    'not-a-cursor',
    `1|${id}`,
    `2030-02-31T00:00:00.000000Z|${id}`,
    `2030-01-01T00:00:00Z|42`,
    `2030-01-01T00:00:00Z|${'-'.repeat(36)}`,
  ]) {
    const cursor = Buffer.from(text).toString('base64url')
    const response = await app.inject({ url: `/api/v1/imports?cursor=${cursor}` })
    t.comment(text)
    assertProblem(t, response, 'bad_request', 'The cursor is not one this service gave out.')
  }
})

// ---------------------------------------------------------------------------------------------
// Unknown and malformed ids

const jobPaths = (id: string) => [
  { method: 'GET' as const, url: `/api/v1/imports/${id}` },
  { method: 'GET' as const, url: `/api/v1/imports/${id}/errors` },
  { method: 'GET' as const, url: `/api/v1/imports/${id}/failed-records` },
  { method: 'GET' as const, url: `/api/v1/imports/${id}/events` },
  { method: 'POST' as const, url: `/api/v1/imports/${id}/cancel` },
]

t.test('an unknown job id answers a 404 problem on every job route', async (t) => {
  const app = await buildTestApp(t)
  const id = '6f1c2a4e-8d3b-4c5a-9e7f-0a1b2c3d4e5f'
  for (const request of jobPaths(id)) {
    const response = await app.inject(request)
    t.comment(`${request.method} ${request.url}`)
    assertProblem(t, response, 'not_found', `There is no import job ${id}.`)
  }
})

t.test('a job id that is not a UUID answers a 400 validation problem on every job route', async (t) => {
  const app = await buildTestApp(t)
  for (const request of jobPaths('42')) {
    const response = await app.inject(request)
    t.comment(`${request.method} ${request.url}`)
    assertProblem(t, response, 'validation_failed', 'params.id must match format "uuid".', {
      errors: [{ in: 'params', name: 'id', pointer: '/id', reason: 'must match format "uuid"' }],
    })
  }
})

// ---------------------------------------------------------------------------------------------
// Errors

/** Errors whose message and value hold a comma, a quote and a line break. */
const awkwardFile =
  'email,name,role\nok@example.com,Ok,reader\nbad,"Bad",reader\nx@example.com,X,"boss, ""big""\nboss"\n'

t.test('GET errors streams every error as NDJSON, one docs/contract.md §7 error per line', async (t) => {
  const app = await startedApp(t)
  const job = await importAndWait(app, { resource: 'users', file: awkwardFile })
  const response = await app.inject({ url: `/api/v1/imports/${job.id}/errors` })
  t.equal(response.statusCode, 200)
  t.equal(response.headers['content-type'], 'application/x-ndjson; charset=utf-8')
  t.ok(response.body.endsWith('\n'))
  const lines = response.body.trimEnd().split('\n')
  t.same(
    lines.map((line) => JSON.parse(line)),
    [
      {
        line: 3,
        record: 2,
        field: 'email',
        code: 'invalid_format',
        message: 'must be an email address (local@domain.tld)',
        value: 'bad',
      },
      {
        line: 4,
        record: 3,
        field: 'role',
        code: 'invalid_value',
        message: 'must be one of admin, editor, author, reader',
        value: 'boss, "big"\nboss',
      },
    ],
  )
})

t.test('GET errors?format=csv streams a CSV with its header, quoting commas, quotes and newlines', async (t) => {
  const app = await startedApp(t)
  const job = await importAndWait(app, { resource: 'users', file: awkwardFile })
  const response = await app.inject({ url: `/api/v1/imports/${job.id}/errors?format=csv` })
  t.equal(response.statusCode, 200)
  t.equal(response.headers['content-type'], 'text/csv; charset=utf-8')
  t.equal(
    response.body,
    'line,record,id,field,code,message,value\n' +
      '3,2,,email,invalid_format,must be an email address (local@domain.tld),bad\n' +
      '4,3,,role,invalid_value,"must be one of admin, editor, author, reader","boss, ""big""\nboss"\n',
  )
  t.same(parseCsv(response.body, { columns: true }), [
    {
      line: '3',
      record: '2',
      id: '',
      field: 'email',
      code: 'invalid_format',
      message: 'must be an email address (local@domain.tld)',
      value: 'bad',
    },
    {
      line: '4',
      record: '3',
      id: '',
      field: 'role',
      code: 'invalid_value',
      message: 'must be one of admin, editor, author, reader',
      value: 'boss, "big"\nboss',
    },
  ])
})

t.test('GET errors carries the record id when the record has one', async (t) => {
  const app = await startedApp(t)
  const id = '0f8fad5b-d9cb-469f-a165-70867728950e'
  const job = await importAndWait(app, { resource: 'users', file: `id,email,name,role\n${id},x@example.com,X,boss\n` })
  const response = await app.inject({ url: `/api/v1/imports/${job.id}/errors?format=csv` })
  t.equal(
    response.body,
    'line,record,id,field,code,message,value\n' +
      `2,1,${id},role,invalid_value,"must be one of admin, editor, author, reader",boss\n`,
  )
})

// ---------------------------------------------------------------------------------------------
// Failed records

async function failedRecords(app: FastifyInstance, id: string): Promise<LightMyRequestResponse> {
  return app.inject({ url: `/api/v1/imports/${id}/failed-records` })
}

t.test('failed-records returns a CSV with its header and the rejected records byte for byte', async (t) => {
  const app = await startedApp(t, { BATCH_SIZE: '2' })
  const file =
    'email, name ,role\nok1@example.com,A,reader\nbad1,  B  ,reader\nok2@example.com,C,reader\n"bad2","D",boss\n'
  const job = await importAndWait(app, { resource: 'users', file })
  t.equal(job.counters.failed, 2)
  const response = await failedRecords(app, job.id)
  t.equal(response.statusCode, 200)
  t.equal(response.headers['content-type'], 'text/csv; charset=utf-8')
  t.equal(response.body, 'email, name ,role\nbad1,  B  ,reader\n"bad2","D",boss\n')
})

t.test('failed-records keeps CRLF line endings and a quoted multi-line record intact', async (t) => {
  const app = await startedApp(t)
  const multiLine = '"x@example.com","Line one\r\nline ""two""",boss'
  const file = `email,name,role\r\nok@example.com,A,reader\r\n${multiLine}\r\nbad,B,reader\r\n`
  const job = await importAndWait(app, { resource: 'users', file })
  t.same(
    job.errors.map((error) => [error.line, error.record]),
    [
      [3, 2],
      [5, 3],
    ],
  )
  const response = await failedRecords(app, job.id)
  t.equal(response.body, `email,name,role\r\n${multiLine}\r\nbad,B,reader\r\n`)
})

t.test('failed-records of an NDJSON import returns the rejected lines as uploaded', async (t) => {
  const app = await startedApp(t)
  const lines = [
    '{"email":"a@example.com","name":"A","role":"reader"}',
    '{ "email" : "b@example.com", "name": "B", "role": "boss" }',
    '{"email":"c@example.com","name":"C","role":"reader","active":"yes"}',
    '{"email":"d@example.com","name":"D","role":"editor"}',
  ]
  const job = await importAndWait(app, { resource: 'users', file: `${lines.join('\n')}\n`, filename: 'u.ndjson' })
  t.same(job.counters, { processed: 4, inserted: 2, updated: 0, failed: 2 })
  const response = await failedRecords(app, job.id)
  t.equal(response.headers['content-type'], 'application/x-ndjson; charset=utf-8')
  t.equal(response.body, `${lines[1]}\n${lines[2]}\n`)
})

t.test('failed-records of a JSON import is a valid JSON array of the rejected elements as uploaded', async (t) => {
  const app = await startedApp(t)
  const elements = [
    '{"email": "a@example.com", "name": "A", "role": "reader"}',
    '{\n    "email": "b@example.com",\n    "name": "B",\n    "role": "boss"\n  }',
    '{"email": "c@example.com", "name": "C", "role": "reader"}',
    '{"email": "nope", "name": "[, ]", "role": "reader"}',
  ]
  const file = `[\n  ${elements.join(',\n  ')}\n]\n`
  const job = await importAndWait(app, { resource: 'users', file, filename: 'u.json' })
  t.same(job.counters, { processed: 4, inserted: 2, updated: 0, failed: 2 })
  const response = await failedRecords(app, job.id)
  t.equal(response.headers['content-type'], 'application/json; charset=utf-8')
  t.equal(response.body, `[\n${elements[1]},\n${elements[3]}\n]\n`)
  t.same(JSON.parse(response.body), [
    { email: 'b@example.com', name: 'B', role: 'boss' },
    { email: 'nope', name: '[, ]', role: 'reader' },
  ])
})

t.test('failed-records of a JSON import without failures is an empty JSON array', async (t) => {
  const app = await startedApp(t)
  const job = await importAndWait(app, {
    resource: 'users',
    file: '[{"email":"a@example.com","name":"A","role":"reader"}]',
    filename: 'u.json',
  })
  t.equal(job.counters.failed, 0)
  const response = await failedRecords(app, job.id)
  t.same(JSON.parse(response.body), [])
})

t.test('failed-records of a gzip upload comes back decompressed', async (t) => {
  const app = await startedApp(t)
  const file = 'email,name,role\nok@example.com,A,reader\nbad,B,reader\n'
  const job = await importAndWait(app, { resource: 'users', file: gzipSync(file), filename: 'users.csv.gz' })
  t.same(job.counters, { processed: 2, inserted: 1, updated: 0, failed: 1 })
  t.equal(job.source.sha256, sha256(gzipSync(file)), 'the hash is of the file as uploaded')
  const response = await failedRecords(app, job.id)
  t.equal(response.body, 'email,name,role\nbad,B,reader\n')
})

t.test('the failed records, fixed and imported again, import without failures', async (t) => {
  const app = await startedApp(t, { BATCH_SIZE: '3' })
  const rows = ['email,name,role']
  for (let index = 1; index <= 10; index++) {
    rows.push(index % 3 === 0 ? `fix-me-${index},User ${index},reader` : `u${index}@example.com,User ${index},reader`)
  }
  const first = await importAndWait(app, { resource: 'users', file: `${rows.join('\r\n')}\r\n` })
  t.same(first.counters, { processed: 10, inserted: 7, updated: 0, failed: 3 })
  const failed = (await failedRecords(app, first.id)).body
  t.equal(failed, 'email,name,role\r\nfix-me-3,User 3,reader\r\nfix-me-6,User 6,reader\r\nfix-me-9,User 9,reader\r\n')
  const fixed = failed.replaceAll(/fix-me-(\d+)/g, 'u$1@example.com')
  const second = await importAndWait(app, { resource: 'users', file: fixed })
  t.same(second.counters, { processed: 3, inserted: 3, updated: 0, failed: 0 })
  t.equal(await countRows(app, 'users'), 10)
})

// ---------------------------------------------------------------------------------------------
// Events

interface ServerSentEvent {
  event: string
  data: string
}

function parseEvents(text: string): ServerSentEvent[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim() && !block.startsWith(':'))
    .map((block) => {
      const fields = Object.fromEntries(
        block.split('\n').map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 2)]),
      )
      return { event: fields.event ?? '', data: fields.data ?? '' }
    })
}

t.test('GET events sends progress events, then a done event with the final job, and closes', async (t) => {
  const app = await buildTestApp(t, { environment: { BATCH_SIZE: '1' } })
  const created = (await uploadImport(app, { resource: 'users', file: usersCsv(5) })).json<ImportJob>()
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const response = await fetch(`${address}/api/v1/imports/${created.id}/events`)
  t.equal(response.status, 200)
  t.equal(response.headers.get('content-type'), 'text/event-stream; charset=utf-8')
  t.equal(response.headers.get('cache-control'), 'no-cache')
  const text = response.text()
  app.jobs.start()
  const events = parseEvents(await text)
  const last = events.at(-1) as ServerSentEvent
  t.equal(events[0]?.event, 'progress')
  t.equal(JSON.parse(events[0]?.data ?? '{}').status, 'queued', 'the first event is the job as it was')
  t.same(
    events.slice(0, -1).map((event) => event.event),
    events.slice(0, -1).map(() => 'progress'),
  )
  t.equal(last.event, 'done')
  const final = JSON.parse(last.data) as ImportJob
  t.equal(final.status, 'completed')
  t.equal(final.done, true)
  t.same(final.counters, { processed: 5, inserted: 5, updated: 0, failed: 0 })
  t.same(final, (await app.inject({ url: `/api/v1/imports/${created.id}` })).json())
})

t.test('GET events of a finished job sends one done event and closes', async (t) => {
  const app = await startedApp(t)
  const job = await importAndWait(app, { resource: 'users', file: usersCsv(1) })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const events = parseEvents(await (await fetch(`${address}/api/v1/imports/${job.id}/events`)).text())
  t.same(
    events.map((event) => event.event),
    ['done'],
  )
  t.same(JSON.parse(events[0]?.data ?? '{}'), job)
})

// ---------------------------------------------------------------------------------------------
// Cancel

t.test('cancelling a queued job answers 202 with the job cancelled; the runner never runs it', async (t) => {
  const app = await buildTestApp(t)
  const id = await queuedJob(app, 'users', 1)
  const response = await app.inject({ method: 'POST', url: `/api/v1/imports/${id}/cancel` })
  t.equal(response.statusCode, 202)
  const body = response.json<ImportJob>()
  t.match(body, { id, status: 'cancelled', done: true, counters: { processed: 0 } })
  t.match(body.finished_at, isoTimestamp)
  app.jobs.start()
  const follow = await waitForImport(app, id)
  t.equal(follow.status, 'cancelled')
  t.equal(await countRows(app, 'users'), 0)
})

t.test('cancelling a finished job answers a 409 problem', async (t) => {
  const app = await startedApp(t)
  const job = await importAndWait(app, { resource: 'users', file: usersCsv(1) })
  const response = await app.inject({ method: 'POST', url: `/api/v1/imports/${job.id}/cancel` })
  assertProblem(t, response, 'conflict', 'The job is already completed.')
})

t.test('cancelling a cancelled job answers a 409 problem', async (t) => {
  const app = await buildTestApp(t)
  const id = await queuedJob(app, 'users', 1)
  await app.inject({ method: 'POST', url: `/api/v1/imports/${id}/cancel` })
  const response = await app.inject({ method: 'POST', url: `/api/v1/imports/${id}/cancel` })
  assertProblem(t, response, 'conflict', 'The job is already cancelled.')
})

t.test('cancelling a running job stops it at a batch boundary; committed batches stay', async (t) => {
  const app = await startedApp(t, { BATCH_SIZE: '100' })
  const file = await generated({ resource: 'users', format: 'csv', rows: 50_000 })
  const created = (await uploadImport(app, { resource: 'users', file, filename: 'users.csv' })).json<ImportJob>()
  let job = created
  while (job.counters.processed === 0) {
    await new Promise((resolve) => setTimeout(resolve, 10))
    job = (await app.inject({ url: `/api/v1/imports/${created.id}` })).json<ImportJob>()
  }
  const response = await app.inject({ method: 'POST', url: `/api/v1/imports/${created.id}/cancel` })
  t.equal(response.statusCode, 202)
  t.equal(response.json<ImportJob>().status, 'running', 'a running job stops at its next batch')
  const final = await waitForImport(app, created.id)
  t.equal(final.status, 'cancelled')
  t.equal(final.done, true)
  const { processed, inserted, updated, failed } = final.counters
  t.ok(processed > 0 && processed < 50_000, `stopped early (${processed} of 50000)`)
  t.equal(processed % 100, 0, 'a multiple of the batch size')
  t.same({ inserted, updated, failed }, { inserted: processed, updated: 0, failed: 0 })
  t.equal(await countRows(app, 'users'), processed, 'the committed rows stay')
})

// ---------------------------------------------------------------------------------------------
// Dry run

t.test('a dry run counts what a real import would do and writes no row', async (t) => {
  const environment = { BATCH_SIZE: '2' }
  const rows = ['id,email,name,role']
  const idOf = (index: number) => `00000000-0000-4000-8000-${String(index).padStart(12, '0')}`
  for (let index = 1; index <= 12; index++) rows.push(`${idOf(index)},u${index}@example.com,U${index},reader`)
  rows.push(`${idOf(3)},u3@example.com,U3 again,editor`) // updates record 3
  rows.push(`${idOf(99)},U5@example.com,Other,reader`) // another id, same email: unique_violation
  rows.push(',u6@example.com,By email,admin') // no id: updates through the natural key
  rows.push(`${idOf(7)},broken,X,reader`) // invalid
  const file = `${rows.join('\n')}\n`

  const real = await startedApp(t, environment)
  const expected = await importAndWait(real, { resource: 'users', file })
  t.same(expected.counters, { processed: 16, inserted: 12, updated: 2, failed: 2 })

  const app = await startedApp(t, environment)
  const dry = await importAndWait(app, { resource: 'users', file, dryRun: true })
  t.equal(dry.dry_run, true)
  t.equal(dry.status, 'completed')
  t.same(dry.counters, expected.counters)
  t.same(dry.errors, expected.errors)
  t.equal(await countRows(app, 'users'), 0, 'nothing written')
})
