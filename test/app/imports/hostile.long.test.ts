import { randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import { gzipSync } from 'node:zlib'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import type { ImportJob } from '../../../schemas/imports.ts'
import { type ProblemCode, problemTypeUri } from '../../../schemas/problem.ts'
import { assertProblem, buildTestApp, importAndWait, multipartBody, uploadImport, waitForImport } from '../../helper.ts'

// Bad input (docs/contract.md §4, §11): every case gets a 4xx problem at once or per-record errors in a job
// that runs to its end; never a 5xx, never a crash, never a job left hanging.

const HEADER = 'email,name,role'

/** Asserts the whole problem body of a refused request, and that no job was created. */
async function assertRefused(
  t: Test,
  app: FastifyInstance,
  response: LightMyRequestResponse,
  code: ProblemCode,
  detail: string,
  extensions: Record<string, unknown> = {},
): Promise<void> {
  assertProblem(t, response, code, detail, extensions)
  const list = await app.inject({ url: '/api/v1/imports' })
  t.same(list.json().items, [], 'no job was created')
}

async function startedApp(t: Test, environment: Record<string, string> = {}): Promise<FastifyInstance> {
  const app = await buildTestApp(t, { environment })
  app.jobs.start()
  return app
}

function upload(app: FastifyInstance, file: Buffer | string, options: { filename?: string; format?: string } = {}) {
  return uploadImport(app, { resource: 'users', file, ...options })
}

/** Uploads, expects 202 and returns the job once done (completed, with per-record errors). */
async function importDone(t: Test, app: FastifyInstance, file: Buffer | string, filename?: string): Promise<ImportJob> {
  const job = await importAndWait(app, { resource: 'users', file, filename })
  t.equal(job.status, 'completed', 'the job ran to its end')
  const { processed, inserted, updated, failed } = job.counters
  t.equal(processed, inserted + updated + failed, 'processed = inserted + updated + failed')
  return job
}

/** The emails stored, sorted. */
async function storedEmails(app: FastifyInstance): Promise<string[]> {
  const rows = await app.sql<{ email: string }[]>`select email from users order by email`
  return rows.map((row) => row.email)
}

// ---------------------------------------------------------------------------------------------
// Refused at once

t.test('an unknown resource answers a 400 validation problem', async (t) => {
  const app = await buildTestApp(t)
  const response = await uploadImport(app, { resource: 'posts', file: `${HEADER}\na@example.com,A,reader\n` })
  await assertRefused(
    t,
    app,
    response,
    'validation_failed',
    'body.resource must be one of users, articles, comments.',
    {
      errors: [
        { in: 'body', name: 'resource', pointer: '/resource', reason: 'must be one of users, articles, comments' },
      ],
    },
  )
})

t.test('an unknown resource in a JSON (URL) import answers a 400 validation problem', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    payload: { resource: 'posts', url: 'https://example.com/posts.csv' },
  })
  await assertRefused(
    t,
    app,
    response,
    'validation_failed',
    'body.resource must be one of users, articles, comments.',
    {
      errors: [
        { in: 'body', name: 'resource', pointer: '/resource', reason: 'must be one of users, articles, comments' },
      ],
    },
  )
})

t.test('an unknown format answers a 400 validation problem', async (t) => {
  const app = await buildTestApp(t)
  const response = await upload(app, `${HEADER}\na@example.com,A,reader\n`, { format: 'xml' })
  await assertRefused(t, app, response, 'validation_failed', 'body.format must be one of csv, ndjson, json.', {
    errors: [{ in: 'body', name: 'format', pointer: '/format', reason: 'must be one of csv, ndjson, json' }],
  })
})

t.test('a multipart body without a file part answers a 400 validation problem', async (t) => {
  const app = await buildTestApp(t)
  const boundary = 'bulkio-boundary'
  const response = await app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    payload: `--${boundary}\r\nContent-Disposition: form-data; name="resource"\r\n\r\nusers\r\n--${boundary}--\r\n`,
  })
  await assertRefused(t, app, response, 'validation_failed', 'The multipart body has no "file" part.', {
    errors: [{ in: 'body', name: 'file', pointer: '/file', reason: 'is required' }],
  })
})

t.test('an empty file answers a 422 problem', async (t) => {
  const app = await buildTestApp(t)
  await assertRefused(t, app, await upload(app, ''), 'unprocessable', 'The file is empty.')
})

t.test('a gzip file holding nothing answers a 422 problem', async (t) => {
  const app = await buildTestApp(t)
  const response = await upload(app, gzipSync(''), { filename: 'users.csv.gz' })
  await assertRefused(t, app, response, 'unprocessable', 'The file is empty.')
})

t.test('a text/plain body answers a 415 problem', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    headers: { 'content-type': 'text/plain' },
    payload: `${HEADER}\na@example.com,A,reader\n`,
  })
  await assertRefused(
    t,
    app,
    response,
    'unsupported_media_type',
    'Send multipart/form-data (a file) or application/json (a URL), not text/plain.',
  )
})

t.test('a body of an unknown content type answers a 415 problem', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    headers: { 'content-type': 'text/csv' },
    payload: `${HEADER}\na@example.com,A,reader\n`,
  })
  await assertRefused(t, app, response, 'unsupported_media_type', 'Unsupported Media Type')
})

t.test('an upload larger than UPLOAD_MAX_BYTES answers a 413 problem', async (t) => {
  const app = await buildTestApp(t, { environment: { UPLOAD_MAX_BYTES: '1000' } })
  const response = await upload(app, `${HEADER}\n${'a@example.com,A,reader\n'.repeat(100)}`)
  await assertRefused(t, app, response, 'payload_too_large', 'The file is larger than UPLOAD_MAX_BYTES.')
})

t.test('a truncated multipart body answers a 400 problem', async (t) => {
  const app = await buildTestApp(t)
  const { payload, contentType } = multipartBody({ resource: 'users', file: `${HEADER}\na@example.com,A,reader\n` })
  for (const cut of [10, 30, 60]) {
    const response = await app.inject({
      method: 'POST',
      url: '/api/v1/imports',
      headers: { 'content-type': contentType },
      payload: payload.subarray(0, payload.length - cut),
    })
    t.comment(`without its last ${cut} bytes`)
    await assertRefused(
      t,
      app,
      response,
      'bad_request',
      'The multipart body cannot be read (Unexpected end of multipart data); send it whole, with its boundary.',
    )
  }
})

t.test('a multipart content type without a boundary answers a 400 problem', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    headers: { 'content-type': 'multipart/form-data' },
    payload: `${HEADER}\na@example.com,A,reader\n`,
  })
  await assertRefused(
    t,
    app,
    response,
    'bad_request',
    'The multipart body cannot be read (Multipart: Boundary not found); send it whole, with its boundary.',
  )
})

t.test('a binary file (random bytes with NULs) answers a 422 problem', async (t) => {
  const app = await buildTestApp(t)
  const file = Buffer.concat([randomBytes(4096), Buffer.alloc(16)])
  file[0] = 0x00 // never gzip's magic number
  const response = await upload(app, file, { filename: 'users.csv' })
  await assertRefused(t, app, response, 'unprocessable', 'The file is binary, not CSV, NDJSON or JSON text.')
})

t.test('a gzip file that does not decompress answers a 422 problem', async (t) => {
  const app = await buildTestApp(t)
  const file = Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.from('not really gzip')])
  const response = await upload(app, file, { filename: 'users.csv.gz' })
  await assertRefused(t, app, response, 'unprocessable', 'The file cannot be decompressed: unknown compression method.')
})

t.test('a CSV without a header answers a 422 problem naming the missing columns', async (t) => {
  const app = await buildTestApp(t)
  const response = await upload(app, 'a@example.com,A,reader\nb@example.com,B,reader\n')
  await assertRefused(
    t,
    app,
    response,
    'unprocessable',
    'The CSV header lacks required columns email, name, role (it has: a@example.com, A, reader).',
  )
})

t.test('a CSV header missing required columns answers a 422 problem naming them', async (t) => {
  const app = await buildTestApp(t)
  const response = await upload(app, 'email,full_name\na@example.com,A\n')
  await assertRefused(
    t,
    app,
    response,
    'unprocessable',
    'The CSV header lacks required columns name, role (it has: email, full_name).',
  )
})

t.test('a CSV header naming a column twice answers a 422 problem', async (t) => {
  const app = await buildTestApp(t)
  const response = await upload(app, 'email,name,role,email\na@example.com,A,reader,b@example.com\n')
  await assertRefused(t, app, response, 'unprocessable', 'The CSV header names the column "email" twice.')
})

t.test('a header-only CSV answers a 422 problem', async (t) => {
  const app = await buildTestApp(t)
  await assertRefused(
    t,
    app,
    await upload(app, `${HEADER}\n`),
    'unprocessable',
    'The CSV file has a header but no records.',
  )
})

t.test('a JSON object instead of an array answers a 422 problem', async (t) => {
  const app = await buildTestApp(t)
  const response = await upload(app, '{"email":"a@example.com","name":"A","role":"reader"}', { filename: 'users.json' })
  await assertRefused(
    t,
    app,
    response,
    'unprocessable',
    'A json import must be a top-level JSON array of records, not a single object (use ndjson for one object per line).',
  )
})

t.test('an empty JSON array answers a 422 problem', async (t) => {
  const app = await buildTestApp(t)
  await assertRefused(
    t,
    app,
    await upload(app, '[]', { filename: 'users.json' }),
    'unprocessable',
    'The file has no records.',
  )
})

// ---------------------------------------------------------------------------------------------
// Accepted: per-record errors, the rest imported

t.test('invalid UTF-8 in one CSV record is a parse_error for that record; the others are imported', async (t) => {
  const app = await startedApp(t)
  const file = Buffer.concat([
    Buffer.from(`${HEADER}\na@example.com,A,reader\nb@example.com,`),
    Buffer.from([0xff, 0xfe, 0x41]),
    Buffer.from(',reader\nc@example.com,C,reader\n'),
  ])
  const job = await importDone(t, app, file)
  t.same(job.counters, { processed: 3, inserted: 2, updated: 0, failed: 1 })
  t.same(job.errors, [{ line: 3, record: 2, code: 'parse_error', message: 'the record is not valid UTF-8' }])
  t.same(await storedEmails(app), ['a@example.com', 'c@example.com'])
})

t.test('invalid UTF-8 in one NDJSON line is a parse_error for that line', async (t) => {
  const app = await startedApp(t)
  const file = Buffer.concat([
    Buffer.from('{"email":"a@example.com","name":"A","role":"reader"}\n{"email":"b@example.com","name":"'),
    Buffer.from([0xc3, 0x28]),
    Buffer.from('","role":"reader"}\n{"email":"c@example.com","name":"C","role":"reader"}\n'),
  ])
  const job = await importDone(t, app, file, 'users.ndjson')
  t.same(job.counters, { processed: 3, inserted: 2, updated: 0, failed: 1 })
  t.same(job.errors, [{ line: 2, record: 2, code: 'parse_error', message: 'the record is not valid UTF-8' }])
})

t.test('an unterminated CSV quote is a parse_error for its record; the records before are imported', async (t) => {
  const app = await startedApp(t)
  const job = await importDone(
    t,
    app,
    `${HEADER}\na@example.com,A,reader\nb@example.com,"B,reader\nc@example.com,C,reader\n`,
  )
  t.same(job.counters, { processed: 2, inserted: 1, updated: 0, failed: 1 })
  t.same(job.errors, [
    { line: 3, record: 2, code: 'parse_error', message: 'a quoted field is not closed before the end of the file' },
  ])
  t.same(await storedEmails(app), ['a@example.com'])
})

t.test('text after a closing CSV quote is a parse_error for that record only', async (t) => {
  const app = await startedApp(t)
  const job = await importDone(
    t,
    app,
    `${HEADER}\na@example.com,A,reader\nb@example.com,"B"x,reader\nc@example.com,C,reader\n`,
  )
  t.same(job.counters, { processed: 3, inserted: 2, updated: 0, failed: 1 })
  t.same(job.errors, [
    { line: 3, record: 2, code: 'parse_error', message: 'a quoted field is followed by other text in field 2' },
  ])
})

t.test('a CSV record with the wrong number of fields is a parse_error naming both counts', async (t) => {
  const app = await startedApp(t)
  const file = `${HEADER}\na@example.com,A,reader\nb@example.com,B\nc@example.com,C,reader,extra\nd@example.com,D,reader\n`
  const job = await importDone(t, app, file)
  t.same(job.counters, { processed: 4, inserted: 2, updated: 0, failed: 2 })
  t.same(job.errors, [
    { line: 3, record: 2, code: 'parse_error', message: 'the record has 2 fields; the header has 3' },
    { line: 4, record: 3, code: 'parse_error', message: 'the record has 4 fields; the header has 3' },
  ])
})

t.test('a 10 MB NDJSON line is a parse_error (RECORD_MAX_BYTES); the other lines are imported', async (t) => {
  const app = await startedApp(t)
  const huge = `{"email":"b@example.com","name":"${'x'.repeat(10 * 1024 * 1024)}","role":"reader"}`
  const file = `{"email":"a@example.com","name":"A","role":"reader"}\n${huge}\n{"email":"c@example.com","name":"C","role":"reader"}\n`
  const job = await importDone(t, app, file, 'users.ndjson')
  t.same(job.counters, { processed: 3, inserted: 2, updated: 0, failed: 1 })
  t.same(job.errors, [
    { line: 2, record: 2, code: 'parse_error', message: 'the record is larger than 1048576 bytes (RECORD_MAX_BYTES)' },
  ])
  t.same(await storedEmails(app), ['a@example.com', 'c@example.com'])
})

t.test('a broken NDJSON line in the middle is a parse_error with its line number only', async (t) => {
  const app = await startedApp(t)
  const file = [
    '{"email":"a@example.com","name":"A","role":"reader"}',
    '',
    '{"email":"b@example.com","name":"B",',
    '{"email":"c@example.com","name":"C","role":"reader"}',
    '',
  ].join('\n')
  const job = await importDone(t, app, file, 'users.ndjson')
  t.same(job.counters, { processed: 3, inserted: 2, updated: 0, failed: 1 })
  t.same(job.errors, [
    {
      line: 3,
      record: 2,
      code: 'parse_error',
      message: 'invalid JSON: Expected double-quoted property name in JSON at position 36 (line 1 column 37)',
    },
  ])
})

t.test('NDJSON lines that are not objects are parse_errors', async (t) => {
  const app = await startedApp(t)
  const job = await importDone(
    t,
    app,
    '[1,2]\n"text"\nnull\n{"email":"c@example.com","name":"C","role":"reader"}\n',
    'u.ndjson',
  )
  t.same(job.counters, { processed: 4, inserted: 1, updated: 0, failed: 3 })
  t.same(
    job.errors,
    [1, 2, 3].map((record) => ({
      line: record,
      record,
      code: 'parse_error',
      message: 'the record must be a JSON object',
    })),
  )
})

t.test('a JSON array cut short imports the complete elements and reports the cut one', async (t) => {
  const app = await startedApp(t)
  const file = '[{"email":"a@example.com","name":"A","role":"reader"},\n{"email":"b@example.com","name":"B"'
  const job = await importDone(t, app, file, 'users.json')
  t.same(job.counters, { processed: 2, inserted: 1, updated: 0, failed: 1 })
  t.same(job.errors, [
    { line: 2, record: 2, code: 'parse_error', message: 'the JSON value is not closed before the end of the file' },
  ])
  t.same(job.warnings, ['the JSON array is not closed with "]"'])
})

t.test('a CSV with a BOM and CRLF line endings imports, with exact line numbers', async (t) => {
  const app = await startedApp(t)
  const file = `\ufeff${HEADER}\r\na@example.com,A,reader\r\nbad,B,reader\r\nc@example.com,C,reader\r\n`
  const job = await importDone(t, app, file)
  t.same(job.counters, { processed: 3, inserted: 2, updated: 0, failed: 1 })
  t.same(
    job.errors.map((error) => [error.line, error.record, error.field, error.code]),
    [[3, 2, 'email', 'invalid_format']],
  )
  t.same(job.warnings, [], 'the BOM is not part of the first column name')
  t.same(await storedEmails(app), ['a@example.com', 'c@example.com'])
})

t.test('quoted newlines keep the line numbers of later records exact', async (t) => {
  const app = await startedApp(t, { BATCH_SIZE: '2' })
  const file = `${HEADER}\na@example.com,"A\nmulti\nline",reader\nbad,B,reader\n"c@example.com","C\r\nx",boss\nbad2,D,reader\n`
  const job = await importDone(t, app, file)
  t.same(job.counters, { processed: 4, inserted: 1, updated: 0, failed: 3 })
  t.same(
    job.errors.map((error) => [error.line, error.record, error.field]),
    [
      [5, 2, 'email'],
      [6, 3, 'role'],
      [8, 4, 'email'],
    ],
  )
  const [stored] = await app.sql<{ name: string }[]>`select name from users`
  t.equal(stored?.name, 'A\nmulti\nline', 'the quoted newlines are kept in the value')
})

t.test('a gzip upload (.gz name) is decompressed and imported', async (t) => {
  const app = await startedApp(t)
  const job = await importDone(t, app, gzipSync(`${HEADER}\na@example.com,A,reader\nbad,B,reader\n`), 'users.csv.gz')
  t.equal(job.format, 'csv')
  t.same(job.counters, { processed: 2, inserted: 1, updated: 0, failed: 1 })
  t.same(
    job.errors.map((error) => [error.line, error.record]),
    [[3, 2]],
  )
})

t.test('a gzip upload under a plain .csv name is recognised by its content and imported', async (t) => {
  const app = await startedApp(t)
  const job = await importDone(t, app, gzipSync(`${HEADER}\na@example.com,A,reader\nbad,B,reader\n`), 'users.csv')
  t.equal(job.format, 'csv')
  t.same(job.counters, { processed: 2, inserted: 1, updated: 0, failed: 1 })
  t.same(await storedEmails(app), ['a@example.com'])
})

t.test('a gzip NDJSON upload without any telling name is sniffed and imported', async (t) => {
  const app = await startedApp(t)
  const file = gzipSync('{"email":"a@example.com","name":"A","role":"reader"}\n')
  const job = await importDone(t, app, file, 'upload.bin')
  t.equal(job.format, 'ndjson')
  t.same(job.counters, { processed: 1, inserted: 1, updated: 0, failed: 0 })
})

// ---------------------------------------------------------------------------------------------
// URLs and ids

t.test('an unreachable URL ends its job failed with a clear problem', async (t) => {
  // A port that was just free: nothing listens there.
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as { port: number }
  await new Promise((resolve) => probe.close(resolve))
  const app = await startedApp(t, { IMPORT_URL_ALLOW_PRIVATE: 'true' })
  const response = await app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    payload: { resource: 'users', url: `http://127.0.0.1:${port}/users.csv` },
  })
  t.equal(response.statusCode, 202)
  const job = await waitForImport(app, response.json<ImportJob>().id)
  t.equal(job.status, 'failed')
  t.match(job.error, {
    type: problemTypeUri('unprocessable'),
    status: 422,
    code: 'unprocessable',
    detail: /^The url cannot be fetched: .*ECONNREFUSED.*\.$/,
  })
})

t.test('a URL that is not a URL answers a 422 problem', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    payload: { resource: 'users', url: 'users.csv' },
  })
  await assertRefused(t, app, response, 'unprocessable', 'The url is not a valid absolute URL.')
})

t.test('URLs reaching loopback in disguise are refused with a 422 problem', async (t) => {
  const app = await buildTestApp(t)
  for (const [url, host] of [
    ['http://[::ffff:127.0.0.1]:8080/users.csv', '[::ffff:7f00:1]'],
    ['http://2130706433/users.csv', '127.0.0.1'],
    ['http://[::1]/users.csv', '[::1]'],
    ['http://169.254.169.254/latest/meta-data', '169.254.169.254'],
  ] as const) {
    const response = await app.inject({ method: 'POST', url: '/api/v1/imports', payload: { resource: 'users', url } })
    t.comment(url)
    await assertRefused(
      t,
      app,
      response,
      'unprocessable',
      `The url's host ${host} is a private, loopback or link-local address (IMPORT_URL_ALLOW_PRIVATE is off).`,
    )
  }
})

t.test('an unknown job id answers a 404 problem', async (t) => {
  const app = await buildTestApp(t)
  const id = '9b2d6c1e-3f4a-4b5c-8d7e-6f5a4b3c2d1e'
  const response = await app.inject({ url: `/api/v1/imports/${id}` })
  await assertRefused(t, app, response, 'not_found', `There is no import job ${id}.`)
})

t.test('a job id that is not a UUID answers a 400 validation problem', async (t) => {
  const app = await buildTestApp(t)
  for (const id of ['123', 'not-a-uuid', '9b2d6c1e-3f4a-4b5c-8d7e-6f5a4b3c2d1', "1' or '1'='1"]) {
    const response = await app.inject({ url: `/api/v1/imports/${encodeURIComponent(id)}` })
    t.comment(id)
    await assertRefused(t, app, response, 'validation_failed', 'params.id must match format "uuid".', {
      errors: [{ in: 'params', name: 'id', pointer: '/id', reason: 'must match format "uuid"' }],
    })
  }
})

// ---------------------------------------------------------------------------------------------
// One CSV rule for splitter and parser; JSON arrays resynchronise (issue 8, finding 3)

t.test('a doubled quote inside an unquoted CSV field is ordinary text: every record is imported', async (t) => {
  const app = await startedApp(t)
  const file = `id,${HEADER}\n,a@example.com,Bob 12"",admin\n,b@example.com,B,reader\n,c@example.com,"C ""x""",reader\n`
  const job = await importDone(t, app, file)
  t.same(job.counters, { processed: 3, inserted: 3, updated: 0, failed: 0 })
  t.same(job.errors, [])
  const rows = await app.sql<{ email: string; name: string }[]>`select email, name from users order by email`
  t.same(
    rows.map((row) => [row.email, row.name]),
    [
      ['a@example.com', 'Bob 12""'],
      ['b@example.com', 'B'],
      ['c@example.com', 'C "x"'],
    ],
  )
})

t.test('10,000 CSV records with quotes inside unquoted fields all import, at any chunk boundary', async (t) => {
  const app = await startedApp(t, { BATCH_SIZE: '500' })
  const names = Array.from({ length: 10_000 }, (_, index) => {
    if (index % 7 === 0) return `Bob ${index}""`
    if (index % 11 === 0) return `O"Brien ${index}"`
    if (index % 13 === 0) return `"quoted ""${index}"", with a comma"`
    return `N${index}`
  })
  const file = `${HEADER}\n${names.map((name, index) => `u${index}@example.com,${name},reader`).join('\n')}\n`
  const job = await importDone(t, app, file)
  t.same(job.counters, { processed: 10_000, inserted: 10_000, updated: 0, failed: 0 })
  const rows = await app.sql<
    { name: string }[]
  >`select name from users order by split_part(substr(email, 2), '@', 1)::int`
  const unquote = (name: string) => (name.startsWith('"') ? name.slice(1, -1).replaceAll('""', '"') : name)
  t.same(
    rows.map((row) => row.name),
    names.map(unquote),
  )
})

t.test('a stray } between JSON array elements is one parse_error; the other elements are imported', async (t) => {
  const app = await startedApp(t)
  const user = (letter: string) => `{"email":"${letter}@example.com","name":"${letter}","role":"reader"}`
  const file = `[\n${user('a')},\n},\n${user('b')},\n${user('c')}}\n, ${user('d')}\n]\n`
  const job = await importDone(t, app, file, 'users.json')
  t.same(job.counters, { processed: 5, inserted: 3, updated: 0, failed: 2 })
  t.same(job.errors, [
    {
      line: 3,
      record: 2,
      code: 'parse_error',
      message: `invalid JSON: Unexpected token '}', "}" is not valid JSON`,
    },
    {
      line: 5,
      record: 4,
      code: 'parse_error',
      message: 'invalid JSON: Unexpected non-whitespace character after JSON at position 52 (line 1 column 53)',
    },
  ])
  t.same(job.warnings, [])
  t.same(await storedEmails(app), ['a@example.com', 'b@example.com', 'd@example.com'])
})
