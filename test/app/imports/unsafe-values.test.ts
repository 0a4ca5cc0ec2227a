import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import type { ImportJob } from '../../../schemas/imports.ts'
import { buildTestApp, importAndWait } from '../../helper.ts'

// Values that PostgreSQL text cannot hold (U+0000), that are not Unicode text at all (a lone
// surrogate), or that are too deep or too long to echo whole: each stays a problem of its own
// record. The job runs to its end, and what an error echoes of the value is safe to store:
// NUL and lone surrogates escaped, bounded in depth and length, marked when cut.

async function startedApp(t: Test): Promise<FastifyInstance> {
  const app = await buildTestApp(t, { environment: { BATCH_SIZE: '2' } })
  app.jobs.start()
  return app
}

/** Imports NDJSON lines (JSON text each) and expects the job to run to its end. */
async function importLines(t: Test, app: FastifyInstance, lines: string[]): Promise<ImportJob> {
  const job = await importAndWait(app, { resource: 'users', file: `${lines.join('\n')}\n`, filename: 'users.ndjson' })
  t.equal(job.status, 'completed', `the job ran to its end (error: ${JSON.stringify(job.error)})`)
  return job
}

async function storedNames(app: FastifyInstance): Promise<string[]> {
  const rows = await app.sql<{ name: string }[]>`select name from users order by name`
  return rows.map((row) => row.name)
}

const valid = (name: string) => `{"email":"${name.toLowerCase()}@example.com","name":"${name}","role":"reader"}`

t.test('a \\u0000 escape in a value is that record’s invalid_value; the value is echoed escaped', async (t) => {
  const app = await startedApp(t)
  const job = await importLines(t, app, [
    valid('Ann'),
    '{"email":"bob\\u0000@example.com","name":"Bob","role":"reader"}',
    '{"email":"cy@example.com","name":"Cy\\u0000","role":"reader"}',
    valid('Dee'),
  ])
  t.same(job.counters, { processed: 4, inserted: 2, updated: 0, failed: 2 })
  t.same(job.errors, [
    {
      line: 2,
      record: 2,
      field: 'email',
      code: 'invalid_value',
      message: 'must not contain a NUL character (U+0000)',
      value: 'bob\\u0000@example.com',
    },
    {
      line: 3,
      record: 3,
      field: 'name',
      code: 'invalid_value',
      message: 'must not contain a NUL character (U+0000)',
      value: 'Cy\\u0000',
    },
  ])
  t.same(await storedNames(app), ['Ann', 'Dee'])
})

t.test('a \\u0000 escape in an id is echoed escaped, in the error’s value and its id', async (t) => {
  const app = await startedApp(t)
  const job = await importLines(t, app, [
    '{"id":"1\\u0000","email":"a@example.com","name":"A","role":"reader"}',
    valid('Bee'),
  ])
  t.same(job.counters, { processed: 2, inserted: 1, updated: 0, failed: 1 })
  t.same(job.errors, [
    {
      line: 1,
      record: 1,
      id: '1\\u0000',
      field: 'id',
      code: 'invalid_format',
      message: 'must be a UUID',
      value: '1\\u0000',
    },
  ])
})

t.test('an unknown key with a \\u0000 escape is listed, escaped, in the warnings', async (t) => {
  const app = await startedApp(t)
  const job = await importLines(t, app, [
    '{"email":"a@example.com","name":"A","role":"reader","ni\\u0000ck":"x"}',
    '{"email":"b@example.com","name":"B","role":"reader","bad\\u0000":"\\u0000"}',
    valid('Cy'),
  ])
  t.same(job.counters, { processed: 3, inserted: 3, updated: 0, failed: 0 })
  t.same(job.warnings, ['unknown fields ignored: bad\\u0000, ni\\u0000ck'])
})

t.test('a lone surrogate in a value is that record’s invalid_value, echoed escaped', async (t) => {
  const app = await startedApp(t)
  const job = await importLines(t, app, [
    '{"email":"a@example.com","name":"A\\ud800B","role":"reader"}',
    '{"email":"b@example.com","name":"B","role":"reader","x\\udfff":1}',
    valid('Cy'),
  ])
  t.same(job.counters, { processed: 3, inserted: 2, updated: 0, failed: 1 })
  t.same(job.errors, [
    {
      line: 1,
      record: 1,
      field: 'name',
      code: 'invalid_value',
      message: 'must be Unicode text (it holds a lone surrogate)',
      value: 'A\\ud800B',
    },
  ])
  t.same(job.warnings, ['unknown field ignored: x\\udfff'])
  t.same(await storedNames(app), ['B', 'Cy'], 'nothing was stored with a replacement character')
})

t.test('a value nested 20,000 levels deep is a type_mismatch whose echo is cut short', async (t) => {
  const app = await startedApp(t)
  const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`
  const deepObject = `${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`
  const job = await importLines(t, app, [
    `{"email":"a@example.com","name":${deep},"role":"reader"}`,
    `{"email":"b@example.com","name":"B","role":${deepObject}}`,
    valid('Cy'),
  ])
  t.same(job.counters, { processed: 3, inserted: 1, updated: 0, failed: 2 })
  const [first, second] = job.errors
  t.match(first, { record: 1, field: 'name', code: 'type_mismatch', message: 'must be a string' })
  t.match(second, { record: 2, field: 'role', code: 'type_mismatch' })
  for (const error of [first, second]) {
    const value = error?.value ?? ''
    t.ok([...value].length <= 201, `the echo is bounded (${[...value].length} characters)`)
    t.ok(value.endsWith('…'), 'and marked as cut')
  }
  t.ok(first?.value?.startsWith('[[[['), 'the echo starts like the value')
  t.ok(second?.value?.startsWith('{"a":{"a":'), 'the echo starts like the value')
})

t.test('a long value is echoed as its first 200 characters and a mark', async (t) => {
  const app = await startedApp(t)
  const long = `${'x'.repeat(300)}🙂`
  const job = await importLines(t, app, [`{"email":"${long}","name":"A","role":"reader"}`, valid('Bee')])
  t.same(job.counters, { processed: 2, inserted: 1, updated: 0, failed: 1 })
  t.equal(job.errors[0]?.value, `${'x'.repeat(200)}…`)
  const short = `${'y'.repeat(199)}🙂`
  const kept = await importLines(t, app, [`{"email":"${short}","name":"A","role":"reader"}`])
  t.equal(kept.errors[0]?.value, short, 'a value of 200 code points is echoed whole')
})

t.test('a raw NUL byte past the inspected start is a parse_error whose message is stored escaped', async (t) => {
  const app = await startedApp(t)
  // Uploads are refused as binary when the first 64 KiB hold a NUL byte; later ones reach the
  // parser, and JSON.parse quotes the text around an unexpected token in its message.
  const lines = Array.from({ length: 2000 }, (_, index) => valid(`User${index}`))
  const job = await importAndWait(app, {
    resource: 'users',
    file: Buffer.concat([
      Buffer.from(`${lines.join('\n')}\n{"email": x`),
      Buffer.from([0]),
      Buffer.from(`}\n${valid('Last')}\n`),
    ]),
    filename: 'users.ndjson',
  })
  t.equal(job.status, 'completed', `the job ran to its end (error: ${JSON.stringify(job.error)})`)
  t.same(job.counters, { processed: 2002, inserted: 2001, updated: 0, failed: 1 })
  t.match(job.errors, [{ line: 2001, record: 2001, code: 'parse_error' }])
  t.notOk(job.errors[0]?.message.includes('\u0000'), 'no NUL in the stored message')
})
