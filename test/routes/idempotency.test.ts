import { request as httpRequest } from 'node:http'
import { connect } from 'node:net'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import type { ImportJob } from '../../schemas/imports.ts'
import { problemTypeUri } from '../../schemas/problem.ts'
import { assertProblem, buildTestApp, multipartBody, uploadImport } from '../helper.ts'

// Idempotency-Key on POST /api/v1/imports (docs/contract.md §9): one job per key and payload, whatever the
// concurrency; 422 for another payload, 409 while the first request is still in flight.

const file = 'email,name,role\na@example.com,A,reader\nb@example.com,B,editor\n'
const otherFile = 'email,name,role\nc@example.com,C,reader\n'

function uploadWithKey(app: FastifyInstance, key: string, body = file, options: { dryRun?: boolean } = {}) {
  return uploadImport(app, { resource: 'users', file: body, headers: { 'idempotency-key': key }, ...options })
}

async function jobIds(app: FastifyInstance): Promise<string[]> {
  const response = await app.inject({ url: '/api/v1/imports' })
  return response.json<{ items: ImportJob[] }>().items.map((job) => job.id)
}

t.test('the first request with a key creates the job; the same request again replays it', async (t) => {
  const app = await buildTestApp(t)
  const first = await uploadWithKey(app, 'replay-1')
  t.equal(first.statusCode, 202)
  t.equal(first.headers['idempotent-replayed'], undefined, 'the first answer is no replay')
  const job = first.json<ImportJob>()

  const again = await uploadWithKey(app, 'replay-1')
  t.equal(again.statusCode, 202)
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.equal(again.headers.location, `/api/v1/imports/${job.id}`)
  t.same(again.json(), job, 'the same body for the same job')
  t.same(await jobIds(app), [job.id])
})

t.test('20 concurrent requests with one key and one file create exactly one job', async (t) => {
  const app = await buildTestApp(t)
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const send = () => {
    const form = new FormData()
    form.set('resource', 'users')
    form.set('file', new Blob([file], { type: 'text/csv' }), 'users.csv')
    return fetch(`${address}/api/v1/imports`, {
      method: 'POST',
      body: form,
      headers: { 'idempotency-key': 'concurrent-1' },
    })
  }
  const responses = await Promise.all(Array.from({ length: 20 }, send))
  const bodies = await Promise.all(responses.map((response) => response.json() as Promise<ImportJob>))
  t.same(
    responses.map((response) => response.status),
    responses.map(() => 202),
  )
  const ids = new Set(bodies.map((body) => body.id))
  t.equal(ids.size, 1, 'every answer names the same job')
  t.same(
    bodies,
    bodies.map(() => bodies[0]),
    'every answer has the same body',
  )
  const [id] = ids
  t.same(
    responses.map((response) => response.headers.get('location')),
    responses.map(() => `/api/v1/imports/${id}`),
  )
  const replayed = responses.filter((response) => response.headers.get('idempotent-replayed') === 'true')
  t.equal(replayed.length, 19, 'all but the first are replays')
  t.same(await jobIds(app), [id], 'exactly one job exists')
})

t.test('20 concurrent injected requests with one key create exactly one job', async (t) => {
  const app = await buildTestApp(t)
  const responses = await Promise.all(Array.from({ length: 20 }, () => uploadWithKey(app, 'concurrent-2')))
  t.same(
    responses.map((response) => response.statusCode),
    responses.map(() => 202),
  )
  t.equal(new Set(responses.map((response) => response.json<ImportJob>().id)).size, 1)
  t.equal(responses.filter((response) => response.headers['idempotent-replayed'] === 'true').length, 19)
  t.equal((await jobIds(app)).length, 1)
})

t.test('the same key with another file answers a 422 problem', async (t) => {
  const app = await buildTestApp(t)
  const first = await uploadWithKey(app, 'reused-1')
  t.equal(first.statusCode, 202)
  const response = await uploadWithKey(app, 'reused-1', otherFile)
  assertProblem(
    t,
    response,
    'unprocessable',
    'This Idempotency-Key was used for another request (other resource, options or file); use a new key.',
  )
  t.same(await jobIds(app), [first.json<ImportJob>().id], 'no second job')
})

t.test('the same key and file with other options (dry_run) answers a 422 problem', async (t) => {
  const app = await buildTestApp(t)
  t.equal((await uploadWithKey(app, 'reused-2')).statusCode, 202)
  const response = await uploadWithKey(app, 'reused-2', file, { dryRun: true })
  assertProblem(
    t,
    response,
    'unprocessable',
    'This Idempotency-Key was used for another request (other resource, options or file); use a new key.',
  )
})

interface RawResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/**
 * Starts an upload whose last bytes are held back: the request stays in flight until `finish()`.
 */
function slowUpload(address: string, key: string) {
  const { payload, contentType } = multipartBody({ resource: 'users', file })
  const held = 40
  const request = httpRequest(`${address}/api/v1/imports`, {
    method: 'POST',
    headers: { 'content-type': contentType, 'content-length': payload.length, 'idempotency-key': key },
  })
  const response = new Promise<RawResponse>((resolve, reject) => {
    request.on('error', reject)
    request.on('response', (incoming) => {
      let body = ''
      incoming.setEncoding('utf8')
      incoming.on('data', (chunk) => {
        body += chunk
      })
      incoming.on('end', () => resolve({ status: incoming.statusCode ?? 0, headers: incoming.headers, body }))
    })
  })
  request.write(payload.subarray(0, payload.length - held))
  return { response, finish: () => request.end(payload.subarray(payload.length - held)) }
}

async function waitForKeyInFlight(app: FastifyInstance, key: string): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const [row] = await app.sql`select state from idempotency_keys where key = ${key}`
    if (row?.state === 'in_flight') return
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error(`the key ${key} was never claimed`)
}

t.test('the same key while the first request is still uploading answers a 409 problem', async (t) => {
  const app = await buildTestApp(t, { environment: { IDEMPOTENCY_WAIT_MS: '300' } })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const first = slowUpload(address, 'in-flight-1')
  await waitForKeyInFlight(app, 'in-flight-1')

  const started = Date.now()
  const second = await uploadWithKey(app, 'in-flight-1')
  assertProblem(t, second, 'conflict', 'A request with this Idempotency-Key is still in progress; retry later.')
  t.ok(Date.now() - started >= 250, 'it waited IDEMPOTENCY_WAIT_MS for the first request')
  t.same(await jobIds(app), [], 'no job yet')

  first.finish()
  const done = await first.response
  t.equal(done.status, 202, 'the first request completes normally')
  const job = JSON.parse(done.body) as ImportJob
  const replay = await uploadWithKey(app, 'in-flight-1')
  t.equal(replay.statusCode, 202)
  t.equal(replay.headers['idempotent-replayed'], 'true')
  t.equal(replay.json<ImportJob>().id, job.id)
  t.same(await jobIds(app), [job.id])
})

t.test('a request waiting on an in-flight key gets the replay when the first completes in time', async (t) => {
  const app = await buildTestApp(t, { environment: { IDEMPOTENCY_WAIT_MS: '5000' } })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const first = slowUpload(address, 'in-flight-2')
  await waitForKeyInFlight(app, 'in-flight-2')
  const second = uploadWithKey(app, 'in-flight-2')
  setTimeout(() => first.finish(), 200)
  const [done, replay] = await Promise.all([first.response, second])
  t.equal(done.status, 202)
  t.equal(replay.statusCode, 202)
  t.equal(replay.headers['idempotent-replayed'], 'true')
  t.equal(replay.json<ImportJob>().id, (JSON.parse(done.body) as ImportJob).id)
})

t.test('a key longer than 255 characters answers a 400 validation problem', async (t) => {
  const app = await buildTestApp(t)
  const response = await uploadWithKey(app, 'k'.repeat(256))
  assertProblem(t, response, 'validation_failed', 'headers.idempotency-key must NOT have more than 255 characters.', {
    errors: [
      {
        in: 'headers',
        name: 'idempotency-key',
        pointer: '/idempotency-key',
        reason: 'must NOT have more than 255 characters',
      },
    ],
  })
  t.same(await jobIds(app), [])
})

t.test('a key of 255 characters is accepted', async (t) => {
  const app = await buildTestApp(t)
  const response = await uploadWithKey(app, 'k'.repeat(255))
  t.equal(response.statusCode, 202)
})

/** Sends raw HTTP/1.1 bytes and returns everything the server answered before closing. */
function rawExchange(address: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(address)
  return new Promise((resolve, reject) => {
    let answer = ''
    const socket = connect(Number(port), hostname, () => socket.write(bytes))
    socket.setEncoding('utf8')
    socket.on('data', (chunk) => {
      answer += chunk
    })
    socket.on('error', (error) => (answer ? resolve(answer) : reject(error)))
    socket.on('close', () => resolve(answer))
  })
}

t.test('a 100 KB Idempotency-Key header answers a 4xx problem and the service keeps serving', async (t) => {
  const app = await buildTestApp(t)
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const { payload, contentType } = multipartBody({ resource: 'users', file })
  const answer = await rawExchange(
    address,
    `POST /api/v1/imports HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${contentType}\r\n` +
      `Content-Length: ${payload.length}\r\nIdempotency-Key: ${'k'.repeat(100 * 1024)}\r\n\r\n${payload}`,
  )
  const [statusLine = ''] = answer.split('\r\n')
  t.match(statusLine, /^HTTP\/1\.1 4\d\d /, `a 4xx answer: ${statusLine}`)
  const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))
  t.match(body, {
    type: problemTypeUri('headers_too_large'),
    title: 'Request header fields too large',
    status: 431,
    detail: 'The request headers are larger than the server accepts (16 KiB).',
    code: 'headers_too_large',
  })

  const live = await fetch(`${address}/live`)
  t.equal(live.status, 200, 'the process keeps serving')
  t.same(await jobIds(app), [])
})

t.test('a key whose first request failed (empty file: 422) can be used again', async (t) => {
  const app = await buildTestApp(t)
  const failed = await uploadWithKey(app, 'retry-1', '')
  assertProblem(t, failed, 'unprocessable', 'The file is empty.')

  const retry = await uploadWithKey(app, 'retry-1')
  t.equal(retry.statusCode, 202)
  t.equal(retry.headers['idempotent-replayed'], undefined, 'a new job, not a replay')
  t.same(await jobIds(app), [retry.json<ImportJob>().id])
})

t.test('a key whose first request was refused (validation) can be used again', async (t) => {
  const app = await buildTestApp(t)
  const refused = await uploadImport(app, {
    resource: 'posts',
    file,
    headers: { 'idempotency-key': 'retry-2' },
  })
  t.equal(refused.statusCode, 400)
  const retry = await uploadWithKey(app, 'retry-2')
  t.equal(retry.statusCode, 202)
  t.equal(retry.headers['idempotent-replayed'], undefined)
})

t.test('a URL import with a key replays the same job for the same URL', async (t) => {
  const app = await buildTestApp(t, { environment: { IMPORT_URL_ALLOW_PRIVATE: 'true' } })
  const send = (url: string) =>
    app.inject({
      method: 'POST',
      url: '/api/v1/imports',
      headers: { 'idempotency-key': 'url-1' },
      payload: { resource: 'users', url },
    })
  const first = await send('http://127.0.0.1:9/users.csv')
  t.equal(first.statusCode, 202)
  const again = await send('http://127.0.0.1:9/users.csv')
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.equal(again.json<ImportJob>().id, first.json<ImportJob>().id)
  const other = await send('http://127.0.0.1:9/other.csv')
  assertProblem(
    t,
    other,
    'unprocessable',
    'This Idempotency-Key was used for another request (other resource, options or file); use a new key.',
  )
})
