import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { buildTestApp } from '../helper.ts'

const problemType = (code: string) => `urn:bulk-io:problem:${code.replaceAll('_', '-')}`
const firstKey = 'first-key-0123456789abcdef'
const secondKey = 'second-key-0123456789abcdef'
const withKeys = { API_KEYS: `${firstKey},${secondKey}` }

/** The product has no /api route yet: this one stands in for them. */
function addFixtureRoute(app: FastifyInstance): void {
  app.get(
    '/api/v1/fixture',
    { schema: { operationId: 'getFixture', response: { 200: Type.Object({ ok: Type.Boolean() }) } } },
    async () => ({ ok: true }),
  )
}

t.test('with API_KEYS set, an /api request without a key gets a 401 problem', async (t) => {
  const app = await buildTestApp(t, { environment: withKeys, beforeReady: addFixtureRoute })
  const response = await app.inject({ url: '/api/v1/fixture' })
  t.equal(response.statusCode, 401)
  t.equal(response.headers['www-authenticate'], 'Bearer realm="bulk-io"')
  t.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8')
  t.same(response.json(), {
    type: problemType('unauthorized'),
    title: 'Authentication required',
    status: 401,
    detail: 'Send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`.',
    instance: response.headers['x-request-id'],
    code: 'unauthorized',
  })
})

t.test('a wrong key, as Bearer or as X-API-Key, gets a 401 naming the key as not valid', async (t) => {
  const app = await buildTestApp(t, { environment: withKeys, beforeReady: addFixtureRoute })
  const wrongKeys = [
    { authorization: 'Bearer not-one-of-the-keys-at-all' },
    { 'x-api-key': 'not-one-of-the-keys-at-all' },
    { authorization: `Bearer ${firstKey}x` },
    { 'x-api-key': firstKey.slice(0, -1) },
  ]
  for (const headers of wrongKeys) {
    const response = await app.inject({ url: '/api/v1/fixture', headers })
    t.equal(response.statusCode, 401, JSON.stringify(headers))
    t.equal(response.headers['www-authenticate'], 'Bearer realm="bulk-io"')
    t.same(response.json(), {
      type: problemType('unauthorized'),
      title: 'Authentication required',
      status: 401,
      detail: 'The API key is not valid.',
      instance: response.headers['x-request-id'],
      code: 'unauthorized',
    })
  }
})

t.test('either key, as Bearer (any case) or as X-API-Key, passes', async (t) => {
  const app = await buildTestApp(t, { environment: withKeys, beforeReady: addFixtureRoute })
  const validKeys = [
    { authorization: `Bearer ${firstKey}` },
    { authorization: `bearer ${secondKey}` },
    { 'x-api-key': firstKey },
    { 'x-api-key': secondKey },
  ]
  for (const headers of validKeys) {
    const response = await app.inject({ url: '/api/v1/fixture', headers })
    t.equal(response.statusCode, 200, JSON.stringify(headers))
    t.same(response.json(), { ok: true })
    t.notOk(response.headers['www-authenticate'])
  }
})

t.test('an unknown /api route answers 401 without a key, so a 401 never reveals which routes exist', async (t) => {
  const app = await buildTestApp(t, { environment: withKeys, beforeReady: addFixtureRoute })
  const anonymous = await app.inject({ url: '/api/v1/anything' })
  t.equal(anonymous.statusCode, 401)
  t.equal(anonymous.json().code, 'unauthorized')

  const authenticated = await app.inject({ url: '/api/v1/anything', headers: { 'x-api-key': secondKey } })
  t.equal(authenticated.statusCode, 404)
  t.same(authenticated.json(), {
    type: problemType('not_found'),
    title: 'Not found',
    status: 404,
    detail: 'There is no route GET /api/v1/anything.',
    instance: authenticated.headers['x-request-id'],
    code: 'not_found',
  })
})

t.test('probes, /docs/json and (by default) /metrics stay open when API_KEYS is set', async (t) => {
  const app = await buildTestApp(t, { environment: withKeys, beforeReady: addFixtureRoute })
  for (const url of ['/health', '/ready', '/live', '/docs/json', '/metrics']) {
    const response = await app.inject({ url })
    t.equal(response.statusCode, 200, url)
  }
})

t.test('with METRICS_AUTH=true, /metrics needs a key too', async (t) => {
  const app = await buildTestApp(t, { environment: { ...withKeys, METRICS_AUTH: 'true' } })
  const anonymous = await app.inject({ url: '/metrics' })
  t.equal(anonymous.statusCode, 401)
  t.equal(anonymous.headers['www-authenticate'], 'Bearer realm="bulk-io"')
  t.same(anonymous.json(), {
    type: problemType('unauthorized'),
    title: 'Authentication required',
    status: 401,
    detail: 'Send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`.',
    instance: anonymous.headers['x-request-id'],
    code: 'unauthorized',
  })
  const authenticated = await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${secondKey}` } })
  t.equal(authenticated.statusCode, 200)
  t.match(authenticated.body, /^# HELP /m)
  t.equal((await app.inject({ url: '/live' })).statusCode, 200, 'probes stay open')
})

t.test('without API_KEYS, /api routes and /metrics need no key', async (t) => {
  const app = await buildTestApp(t, { environment: { METRICS_AUTH: 'true' }, beforeReady: addFixtureRoute })
  const response = await app.inject({ url: '/api/v1/fixture' })
  t.equal(response.statusCode, 200)
  t.same(response.json(), { ok: true })
  t.equal((await app.inject({ url: '/api/v1/fixture', headers: { 'x-api-key': 'anything' } })).statusCode, 200)
  t.equal((await app.inject({ url: '/api/v1/anything' })).statusCode, 404)
  t.equal((await app.inject({ url: '/metrics' })).statusCode, 200)
})

t.test('the OpenAPI document gives /api routes a bearerAuth or apiKeyHeader security requirement', async (t) => {
  const app = await buildTestApp(t, { beforeReady: addFixtureRoute })
  const document = app.swagger()
  const operation = document.paths?.['/api/v1/fixture']?.get
  t.same(operation?.security, [{ bearerAuth: [] }, { apiKeyHeader: [] }])
  t.ok(operation?.responses?.['401'], 'the 401 problem is documented')
  const schemes = 'components' in document ? document.components?.securitySchemes : undefined
  t.same(Object.keys(schemes ?? {}).sort(), ['apiKeyHeader', 'bearerAuth'])
  t.same(document.paths?.['/health']?.get?.security, [], 'probes are documented as open')
  t.same(
    document.paths?.['/metrics']?.get?.security,
    [{ bearerAuth: [] }, { apiKeyHeader: [] }, {}],
    '/metrics is documented as open or keyed (METRICS_AUTH)',
  )
})

t.test('a rejected request still carries its X-Request-Id', async (t) => {
  const app = await buildTestApp(t, { environment: withKeys, beforeReady: addFixtureRoute })
  const given = await app.inject({ url: '/api/v1/fixture', headers: { 'x-request-id': 'rejected-1' } })
  t.equal(given.statusCode, 401)
  t.equal(given.headers['x-request-id'], 'rejected-1')
  t.equal(given.json().instance, 'rejected-1')

  const generated = await app.inject({ url: '/api/v1/fixture' })
  t.match(generated.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  t.equal(generated.json().instance, generated.headers['x-request-id'])
})

t.test('a request refused with 401 is still counted in the HTTP metrics', async (t) => {
  const app = await buildTestApp(t, { environment: withKeys, beforeReady: addFixtureRoute })
  t.equal((await app.inject({ url: '/api/v1/fixture' })).statusCode, 401)
  const metrics = (await app.inject({ url: '/metrics' })).body
  t.match(metrics, /http_request_duration_seconds_count\{method="GET",route="\/api\/v1\/fixture",status_code="401"\} 1/)
})
