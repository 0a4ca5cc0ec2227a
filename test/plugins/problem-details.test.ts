import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { ProblemError } from '../../plugins/problem-details.ts'
import { stringEnum } from '../../schemas/common.ts'
import { assertProblem, buildTestApp, capturingLogger } from '../helper.ts'

const problemType = (code: string) => `urn:bulk-io:problem:${code.replaceAll('_', '-')}`
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const problemContentType = 'application/problem+json; charset=utf-8'

/** Routes the product does not have yet, each one exercising a path of the error handler. */
function addFixtureRoutes(app: FastifyInstance): void {
  app.post(
    '/fixture/items',
    {
      schema: {
        querystring: Type.Object(
          { limit: Type.Optional(Type.Integer({ minimum: 1 })) },
          { additionalProperties: false },
        ),
        body: Type.Object(
          {
            name: Type.String({ minLength: 1 }),
            count: Type.Integer({ minimum: 1 }),
            role: stringEnum(['admin', 'reader']),
            tags: Type.Optional(Type.Array(Type.String({ maxLength: 3 }))),
          },
          { additionalProperties: false },
        ),
      },
    },
    async () => ({ stored: true }),
  )
  app.get('/fixture/crash', async () => {
    throw new Error('secret failure details')
  })
  app.get('/fixture/conflict', async () => {
    throw new ProblemError('conflict', 'The slug `hello` is taken.', { slug: 'hello' })
  })
  app.get('/fixture/database-down', async () => {
    throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })
  })
}

t.test('an unknown route answers a 404 problem whose instance is the request id', async (t) => {
  const app = await buildTestApp(t, { beforeReady: addFixtureRoutes })
  const response = await app.inject({ url: '/x' })
  t.equal(response.statusCode, 404)
  t.equal(response.headers['content-type'], problemContentType)
  t.match(response.headers['x-request-id'], uuid)
  t.same(response.json(), {
    type: problemType('not_found'),
    title: 'Not found',
    status: 404,
    detail: 'There is no route GET /x.',
    instance: response.headers['x-request-id'],
    code: 'not_found',
  })
})

t.test('a body failing its schema lists every failing field at once', async (t) => {
  const app = await buildTestApp(t, { beforeReady: addFixtureRoutes })
  const response = await app.inject({
    method: 'POST',
    url: '/fixture/items',
    payload: { count: 0, role: 'boss', color: 'red', tags: ['ok', 'long'] },
  })
  t.equal(response.statusCode, 400)
  t.equal(response.headers['content-type'], problemContentType)
  t.same(response.json(), {
    type: problemType('validation_failed'),
    title: 'Request validation failed',
    status: 400,
    detail:
      'body.name is required; body.color is not a known field; body.count must be >= 1; body.role must be one of admin, reader; body.tags.1 must NOT have more than 3 characters.',
    instance: response.headers['x-request-id'],
    code: 'validation_failed',
    errors: [
      { in: 'body', name: 'name', pointer: '/name', reason: 'is required' },
      { in: 'body', name: 'color', pointer: '/color', reason: 'is not a known field' },
      { in: 'body', name: 'count', pointer: '/count', reason: 'must be >= 1' },
      { in: 'body', name: 'role', pointer: '/role', reason: 'must be one of admin, reader' },
      { in: 'body', name: 'tags.1', pointer: '/tags/1', reason: 'must NOT have more than 3 characters' },
    ],
  })
})

t.test('a query string failing its schema is reported with in: querystring', async (t) => {
  const app = await buildTestApp(t, { beforeReady: addFixtureRoutes })
  const response = await app.inject({
    method: 'POST',
    url: '/fixture/items?limit=abc&sort=name',
    payload: { name: 'Ada', count: 1, role: 'admin' },
  })
  t.equal(response.statusCode, 400)
  t.same(response.json(), {
    type: problemType('validation_failed'),
    title: 'Request validation failed',
    status: 400,
    detail: 'querystring.sort is not a known field; querystring.limit must be integer.',
    instance: response.headers['x-request-id'],
    code: 'validation_failed',
    errors: [
      { in: 'querystring', name: 'sort', pointer: '/sort', reason: 'is not a known field' },
      { in: 'querystring', name: 'limit', pointer: '/limit', reason: 'must be integer' },
    ],
  })
})

t.test('a valid request passes the fixture route, so the failures above come from the schema', async (t) => {
  const app = await buildTestApp(t, { beforeReady: addFixtureRoutes })
  const response = await app.inject({
    method: 'POST',
    url: '/fixture/items?limit=5',
    payload: { name: 'Ada', count: 1, role: 'admin', tags: ['a'] },
  })
  t.equal(response.statusCode, 200)
  t.same(response.json(), { stored: true })
})

t.test('a malformed JSON body answers a 400 bad_request problem', async (t) => {
  const app = await buildTestApp(t, { beforeReady: addFixtureRoutes })
  const response = await app.inject({
    method: 'POST',
    url: '/fixture/items',
    headers: { 'content-type': 'application/json' },
    payload: '{"name": ',
  })
  t.equal(response.statusCode, 400)
  t.equal(response.headers['content-type'], problemContentType)
  t.same(response.json(), {
    type: problemType('bad_request'),
    title: 'Bad request',
    status: 400,
    detail: "Body is not valid JSON but content-type is set to 'application/json'",
    instance: response.headers['x-request-id'],
    code: 'bad_request',
  })
})

t.test('a body over BODY_LIMIT_BYTES answers a 413 problem', async (t) => {
  const app = await buildTestApp(t, { beforeReady: addFixtureRoutes, environment: { BODY_LIMIT_BYTES: '2048' } })
  const small = await app.inject({
    method: 'POST',
    url: '/fixture/items',
    payload: { name: 'x'.repeat(1900), count: 1, role: 'admin' },
  })
  t.equal(small.statusCode, 200, 'a body just under the limit is accepted')

  const response = await app.inject({
    method: 'POST',
    url: '/fixture/items',
    payload: { name: 'x'.repeat(2100), count: 1, role: 'admin' },
  })
  t.equal(response.statusCode, 413)
  t.equal(response.headers['content-type'], problemContentType)
  t.same(response.json(), {
    type: problemType('payload_too_large'),
    title: 'Payload too large',
    status: 413,
    detail: 'Request body is too large',
    instance: response.headers['x-request-id'],
    code: 'payload_too_large',
  })
})

t.test('a content type the route cannot parse answers a 415 problem', async (t) => {
  const app = await buildTestApp(t, { beforeReady: addFixtureRoutes })
  const response = await app.inject({
    method: 'POST',
    url: '/fixture/items',
    headers: { 'content-type': 'text/csv' },
    payload: 'name,count,role\nAda,1,admin\n',
  })
  t.equal(response.statusCode, 415)
  t.equal(response.headers['content-type'], problemContentType)
  t.same(response.json(), {
    type: problemType('unsupported_media_type'),
    title: 'Unsupported media type',
    status: 415,
    detail: 'Unsupported Media Type',
    instance: response.headers['x-request-id'],
    code: 'unsupported_media_type',
  })
})

t.test('an unexpected error answers a generic 500 and logs the cause with the request id', async (t) => {
  const { logger, lines } = capturingLogger()
  const app = await buildTestApp(t, { beforeReady: addFixtureRoutes, logger })
  const response = await app.inject({ url: '/fixture/crash' })
  const requestId = response.headers['x-request-id']
  t.equal(response.statusCode, 500)
  t.equal(response.headers['content-type'], problemContentType)
  t.same(response.json(), {
    type: problemType('internal_error'),
    title: 'Internal server error',
    status: 500,
    detail: 'An unexpected error occurred. Quote the instance (request id) when reporting it.',
    instance: requestId,
    code: 'internal_error',
  })
  t.notMatch(response.body, /secret failure details|\bat /, 'neither the message nor a stack leaves the service')

  const errors = lines.filter((line) => line.level === 50)
  t.equal(errors.length, 1)
  t.match(errors[0], {
    reqId: requestId,
    msg: 'request failed',
    err: { type: 'Error', message: 'secret failure details', stack: /^Error: secret failure details\n/ },
  })
})

t.test('a ProblemError thrown by a handler answers with its code, detail and extensions', async (t) => {
  const app = await buildTestApp(t, { beforeReady: addFixtureRoutes })
  const response = await app.inject({ url: '/fixture/conflict' })
  t.equal(response.statusCode, 409)
  t.equal(response.headers['content-type'], problemContentType)
  t.same(response.json(), {
    type: problemType('conflict'),
    title: 'Conflict',
    status: 409,
    detail: 'The slug `hello` is taken.',
    instance: response.headers['x-request-id'],
    code: 'conflict',
    slug: 'hello',
  })
})

t.test('an unreachable database answers 503 database_unavailable with Retry-After', async (t) => {
  const { logger, lines } = capturingLogger()
  const app = await buildTestApp(t, { beforeReady: addFixtureRoutes, logger })
  const response = await app.inject({ url: '/fixture/database-down' })
  t.equal(response.statusCode, 503)
  t.equal(response.headers['retry-after'], '5')
  t.equal(response.headers['content-type'], problemContentType)
  t.same(response.json(), {
    type: problemType('database_unavailable'),
    title: 'Database unavailable',
    status: 503,
    detail: 'The database is unavailable; retry shortly.',
    instance: response.headers['x-request-id'],
    code: 'database_unavailable',
  })
  t.match(
    lines.filter((line) => line.level === 50),
    [{ reqId: response.headers['x-request-id'], msg: 'database unavailable', err: { code: 'ECONNREFUSED' } }],
  )
})

t.test('a valid incoming X-Request-Id is echoed and becomes the instance', async (t) => {
  const app = await buildTestApp(t, { beforeReady: addFixtureRoutes })
  for (const given of ['client-42.retry:1_a', 'x'.repeat(128)]) {
    const response = await app.inject({ url: '/x', headers: { 'x-request-id': given } })
    t.equal(response.headers['x-request-id'], given)
    t.equal(response.json().instance, given)
  }
  const ok = await app.inject({ url: '/live', headers: { 'x-request-id': 'probe-7' } })
  t.equal(ok.headers['x-request-id'], 'probe-7', 'successful responses carry it too')
})

t.test('an invalid incoming X-Request-Id is replaced by a new UUID', async (t) => {
  const app = await buildTestApp(t, { beforeReady: addFixtureRoutes })
  for (const given of ['has spaces in it', 'x'.repeat(129), 'x'.repeat(200), 'semi;colon', 'ünïcode']) {
    const response = await app.inject({ url: '/x', headers: { 'x-request-id': given } })
    const echoed = response.headers['x-request-id']
    t.match(echoed, uuid, `${given.slice(0, 20)} is replaced`)
    t.equal(response.json().instance, echoed)
  }
})

// ---------------------------------------------------------------------------------------------
// 405: a path that exists, with a method it does not have

const jobId = '6f1c2a7e-3b0d-4c61-9d1e-2f5b8a9c0d14'

t.test('a method a path does not have answers 405 with Allow listing the methods it has', async (t) => {
  const app = await buildTestApp(t)
  const cases: [string, string, string, string][] = [
    ['DELETE', '/api/v1/imports', '/api/v1/imports', 'GET, HEAD, POST'],
    ['PUT', `/api/v1/imports/${jobId}`, `/api/v1/imports/${jobId}`, 'GET, HEAD'],
    ['PATCH', '/api/v1/imports/not-even-a-uuid?x=1', '/api/v1/imports/not-even-a-uuid', 'GET, HEAD'],
    ['GET', `/api/v1/imports/${jobId}/cancel`, `/api/v1/imports/${jobId}/cancel`, 'POST'],
    ['POST', '/api/v1/exports/users/stream?format=csv', '/api/v1/exports/users/stream', 'GET, HEAD'],
    ['OPTIONS', '/api/v1/exports', '/api/v1/exports', 'GET, HEAD, POST'],
    ['DELETE', `/api/v1/exports/${jobId}/download`, `/api/v1/exports/${jobId}/download`, 'GET, HEAD'],
    ['POST', '/health', '/health', 'GET, HEAD'],
    ['PUT', '/docs/json', '/docs/json', 'GET, HEAD'],
  ]
  for (const [method, url, path, allow] of cases) {
    const response = await app.inject({ method: method as 'GET', url })
    t.comment(`${method} ${url}`)
    assertProblem(t, response, 'method_not_allowed', `${path} does not support ${method}; it supports ${allow}.`)
    t.equal(response.headers.allow, allow, 'Allow lists the methods of the path')
  }
})

t.test('a HEAD on a path without GET answers 405 with Allow and no body', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({ method: 'HEAD', url: `/api/v1/imports/${jobId}/cancel` })
  t.equal(response.statusCode, 405)
  t.equal(response.headers.allow, 'POST')
  t.equal(response.body, '')
})

t.test('a path no route has answers 404, whatever the method', async (t) => {
  const app = await buildTestApp(t)
  for (const [method, url] of [
    ['GET', '/nothing'],
    ['DELETE', '/nothing'],
    ['POST', '/api/v2/imports'],
    ['PUT', `/api/v1/imports/${jobId}/unknown`],
    // The router's own refusal of a GET (a parameter over 100 characters) is not a route either.
    ['DELETE', `/api/v1/imports/${'x'.repeat(150)}`],
  ]) {
    const response = await app.inject({ method: method as 'GET', url })
    t.comment(`${method} ${url}`)
    assertProblem(t, response, 'not_found', `There is no route ${method} ${url}.`)
    t.notOk(response.headers.allow)
  }
})

t.test('a stream of an unknown resource is not a path with methods: 404 for other methods', async (t) => {
  // GET answers it (routes/exports: a hidden catch-all that words a clear 400); it makes no
  // method "allowed" on /api/v1/exports/<anything>/stream.
  const app = await buildTestApp(t)
  const get = await app.inject({ url: '/api/v1/exports/posts/stream' })
  t.equal(get.statusCode, 400)
  const post = await app.inject({ method: 'POST', url: '/api/v1/exports/posts/stream' })
  assertProblem(t, post, 'not_found', 'There is no route POST /api/v1/exports/posts/stream.')
  t.notOk(post.headers.allow)
})

t.test('with API_KEYS set, a 405 needs a key first: 401 without one, never revealing the path', async (t) => {
  const app = await buildTestApp(t, { environment: { API_KEYS: 'first-key-0123456789' } })
  const anonymous = await app.inject({ method: 'DELETE', url: '/api/v1/imports' })
  assertProblem(t, anonymous, 'unauthorized', 'Send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`.')
  t.notOk(anonymous.headers.allow, 'no Allow header before authentication')
  const unknown = await app.inject({ method: 'DELETE', url: '/api/v1/nothing' })
  t.equal(unknown.statusCode, 401, 'an unknown path gets the same 401')

  const authenticated = await app.inject({
    method: 'DELETE',
    url: '/api/v1/imports',
    headers: { authorization: 'Bearer first-key-0123456789' },
  })
  assertProblem(
    t,
    authenticated,
    'method_not_allowed',
    '/api/v1/imports does not support DELETE; it supports GET, HEAD, POST.',
  )
  t.equal(authenticated.headers.allow, 'GET, HEAD, POST')
})

t.test('paths the router refuses before any route answer 400 problems, not Fastify’s own JSON', async (t) => {
  const app = await buildTestApp(t)
  assertProblem(
    t,
    await app.inject({ url: '/api/v1/imports/%zz' }),
    'bad_request',
    'The path cannot be decoded: each percent sign must start an escape of UTF-8 (%XX).',
  )
  assertProblem(
    t,
    await app.inject({ url: '/api/v1/imports/%ED%A0%80/errors' }),
    'bad_request',
    'The path cannot be decoded: each percent sign must start an escape of UTF-8 (%XX).',
  )
  assertProblem(
    t,
    await app.inject({ url: `/api/v1/imports/${'a'.repeat(150)}` }),
    'bad_request',
    'A path segment is longer than 100 characters; no route takes one that long.',
  )
})
