import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import type { ImportJob } from '../../schemas/imports.ts'
import type { ProblemCode } from '../../schemas/problem.ts'
import { assertProblem, buildTestApp } from '../helper.ts'

// The shape of the multipart form of POST /api/v1/imports (finding 10 of issue 8): a form the
// service cannot read as "the fields resource, format, dry_run and one part named file" is the
// client's mistake, a 400 that says what to send; only a file over UPLOAD_MAX_BYTES is a 413.

const CSV = 'email,name,role\na@example.com,A,reader\n'
const BOUNDARY = 'bulkio-form-boundary'

interface Part {
  name: string
  value: string
  /** Present on a file part. */
  filename?: string
  contentType?: string
}

const field = (name: string, value: string, contentType?: string): Part => ({ name, value, contentType })
const file = (name = 'file', value = CSV): Part => ({ name, value, filename: 'users.csv', contentType: 'text/csv' })

/** POSTs a multipart body made of exactly these parts, in this order. */
function postForm(app: FastifyInstance, parts: Part[]): Promise<LightMyRequestResponse> {
  const body = parts.map((part) => {
    const disposition = `form-data; name="${part.name}"${part.filename === undefined ? '' : `; filename="${part.filename}"`}`
    const type = part.contentType ? `Content-Type: ${part.contentType}\r\n` : ''
    return `--${BOUNDARY}\r\nContent-Disposition: ${disposition}\r\n${type}\r\n${part.value}\r\n`
  })
  return app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` },
    payload: `${body.join('')}--${BOUNDARY}--\r\n`,
  })
}

/** The problem, and that nothing was created. */
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

t.test('a form with two file parts answers 400, not 413', async (t) => {
  const app = await buildTestApp(t)
  const response = await postForm(app, [field('resource', 'users'), file(), file()])
  await assertRefused(
    t,
    app,
    response,
    'bad_request',
    'The form has more than one file part: send exactly one file, as the part named "file".',
  )
})

t.test('a form with two file parts of other names answers 400 naming the first unexpected one', async (t) => {
  const app = await buildTestApp(t)
  const response = await postForm(app, [field('resource', 'users'), file('upload'), file('attachment')])
  await assertRefused(
    t,
    app,
    response,
    'bad_request',
    'Unexpected file part "upload": send exactly one file, as the part named "file".',
  )
})

t.test('a form with more fields than the form has answers 400, not 413', async (t) => {
  const app = await buildTestApp(t)
  const extra = Array.from({ length: 11 }, (_, index) => field(`extra${index}`, 'x'))
  const response = await postForm(app, [field('resource', 'users'), ...extra, file()])
  await assertRefused(
    t,
    app,
    response,
    'bad_request',
    'The form has more than 10 fields: send resource, format and dry_run, and one file part named "file".',
  )
})

t.test('a form of more than 20 parts answers 400, not 413', async (t) => {
  const app = await buildTestApp(t)
  // File parts named otherwise than `file` are refused at once, so only fields can pile up: the
  // field limit (10) is reached before the part limit (20). Either way the detail says what to send.
  const extra = Array.from({ length: 25 }, (_, index) => field(`extra${index}`, 'x'))
  const response = await postForm(app, [...extra, file()])
  t.equal(response.statusCode, 400)
  t.match(response.json(), {
    code: 'bad_request',
    detail:
      /^The form has more than (10 fields|20 parts): send resource, format and dry_run, and one file part named "file"\.$/,
  })
})

t.test('a field value longer than 4096 bytes is refused, never silently cut', async (t) => {
  const app = await buildTestApp(t)
  // Cut at 4096 bytes and trimmed, this would read as `users` and import.
  const response = await postForm(app, [field('resource', `users${' '.repeat(5000)}`), file()])
  await assertRefused(t, app, response, 'validation_failed', 'body.resource must NOT be longer than 4096 bytes.', {
    errors: [{ in: 'body', name: 'resource', pointer: '/resource', reason: 'must NOT be longer than 4096 bytes' }],
  })
})

t.test('a field value of exactly 4096 bytes is read whole', async (t) => {
  const app = await buildTestApp(t)
  const response = await postForm(app, [field('resource', `users${' '.repeat(4091)}`), file()])
  t.equal(response.statusCode, 202, response.body)
  t.equal(response.json<ImportJob>().resource, 'users')
})

t.test('a long unknown field name is reported whole, never cut to a known one', async (t) => {
  const app = await buildTestApp(t)
  const name = `resource${'x'.repeat(300)}`
  const response = await postForm(app, [field('resource', 'users'), field(name, 'articles'), file()])
  await assertRefused(t, app, response, 'validation_failed', `body.${name} is not a known field.`, {
    errors: [{ in: 'body', name, pointer: `/${name}`, reason: 'is not a known field' }],
  })
})

t.test('a field given twice is refused rather than one value silently winning', async (t) => {
  const app = await buildTestApp(t)
  const response = await postForm(app, [field('resource', 'users'), field('resource', 'articles'), file()])
  await assertRefused(t, app, response, 'validation_failed', 'body.resource is given more than once.', {
    errors: [{ in: 'body', name: 'resource', pointer: '/resource', reason: 'is given more than once' }],
  })
})

t.test('an unknown form field answers a 400 validation problem naming it', async (t) => {
  const app = await buildTestApp(t)
  const response = await postForm(app, [field('resource', 'users'), field('mode', 'fast'), file()])
  await assertRefused(t, app, response, 'validation_failed', 'body.mode is not a known field.', {
    errors: [{ in: 'body', name: 'mode', pointer: '/mode', reason: 'is not a known field' }],
  })
})

t.test('a field sent as JSON (Content-Type application/json) is read as its text, not dropped', async (t) => {
  const app = await buildTestApp(t)
  const response = await postForm(app, [
    field('resource', '"users"', 'application/json'),
    field('dry_run', 'true', 'application/json'),
    file(),
  ])
  t.equal(response.statusCode, 202, response.body)
  t.match(response.json<ImportJob>(), { resource: 'users', dry_run: true })
})

t.test('a field sent as JSON that is an object answers a 400 validation problem', async (t) => {
  const app = await buildTestApp(t)
  const response = await postForm(app, [field('resource', '{"name":"users"}', 'application/json'), file()])
  await assertRefused(t, app, response, 'validation_failed', 'body.resource must be text.', {
    errors: [{ in: 'body', name: 'resource', pointer: '/resource', reason: 'must be text' }],
  })
})

t.test('a field declared as JSON that is not JSON answers 400, not 406', async (t) => {
  const app = await buildTestApp(t)
  const response = await postForm(app, [field('resource', 'users', 'application/json'), file()])
  await assertRefused(
    t,
    app,
    response,
    'bad_request',
    'A form field declared as application/json is not valid JSON; send the fields as plain text.',
  )
})

t.test('a field named after an Object.prototype property answers 400', async (t) => {
  const app = await buildTestApp(t)
  const response = await postForm(app, [field('resource', 'users'), field('constructor', 'x'), file()])
  await assertRefused(
    t,
    app,
    response,
    'bad_request',
    'A form part is named after a built-in object property (such as __proto__ or constructor); send resource, format and dry_run, and one file part named "file".',
  )
})

t.test('a file over UPLOAD_MAX_BYTES still answers 413', async (t) => {
  const app = await buildTestApp(t, { environment: { UPLOAD_MAX_BYTES: '100' } })
  const response = await postForm(app, [field('resource', 'users'), file('file', CSV.repeat(10))])
  await assertRefused(t, app, response, 'payload_too_large', 'The file is larger than UPLOAD_MAX_BYTES.')
})
