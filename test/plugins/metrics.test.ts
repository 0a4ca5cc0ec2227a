import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { buildTestApp } from '../helper.ts'

/** A route with a path parameter: its metrics must carry the pattern, not each URL. */
function addFixtureRoute(app: FastifyInstance): void {
  app.get('/fixture/:id', { schema: { params: Type.Object({ id: Type.String() }) } }, async (request) => ({
    id: (request.params as { id: string }).id,
  }))
}

async function scrape(app: FastifyInstance): Promise<string> {
  const response = await app.inject({ url: '/metrics' })
  if (response.statusCode !== 200) throw new Error(`/metrics answered ${response.statusCode}`)
  return response.body
}

t.test('/metrics serves the Prometheus text format', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({ url: '/metrics' })
  t.equal(response.statusCode, 200)
  t.match(response.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.match(response.body, /^# HELP http_request_duration_seconds /m)
  t.match(response.body, /^# TYPE http_request_duration_seconds histogram$/m)
})

t.test('request durations are labelled with the route pattern, method and status code', async (t) => {
  const app = await buildTestApp(t, { beforeReady: addFixtureRoute })
  t.equal((await app.inject({ url: '/fixture/123' })).statusCode, 200)
  t.equal((await app.inject({ url: '/fixture/456' })).statusCode, 200)
  t.equal((await app.inject({ url: '/live' })).statusCode, 200)

  const body = await scrape(app)
  t.match(
    body,
    /^http_request_duration_seconds_bucket\{le="0\.005",method="GET",route="\/fixture\/:id",status_code="200"\} \d+$/m,
  )
  t.match(body, /^http_request_duration_seconds_count\{method="GET",route="\/fixture\/:id",status_code="200"\} 2$/m)
  t.match(body, /^http_request_duration_seconds_count\{method="GET",route="\/live",status_code="200"\} 1$/m)
  t.notMatch(body, /route="\/fixture\/(123|456)"/, 'raw URLs never become label values')
})

t.test('the histogram uses the service’s buckets, up to five minutes', async (t) => {
  const app = await buildTestApp(t)
  await app.inject({ url: '/live' })
  const body = await scrape(app)
  const bounds = [...body.matchAll(/^http_request_duration_seconds_bucket\{le="([^"]+)",[^}]*route="\/live"/gm)].map(
    (match) => match[1],
  )
  t.same(bounds, [
    '0.005',
    '0.01',
    '0.025',
    '0.05',
    '0.1',
    '0.25',
    '0.5',
    '1',
    '2.5',
    '5',
    '10',
    '30',
    '60',
    '300',
    '+Inf',
  ])
})

t.test('process and event-loop metrics are exported', async (t) => {
  const app = await buildTestApp(t)
  const body = await scrape(app)
  t.match(body, /^process_resident_memory_bytes \d+$/m)
  t.match(body, /^process_cpu_seconds_total [\d.e-]+$/m)
  t.match(body, /^nodejs_eventloop_lag_seconds [\d.e-]+$/m)
  t.match(body, /^nodejs_heap_size_used_bytes \d+$/m)
})

t.test('a second app built after the first still serves /metrics, from a cleared registry', async (t) => {
  const first = await buildTestApp(t, { beforeReady: addFixtureRoute })
  await first.inject({ url: '/fixture/1' })
  await first.inject({ url: '/fixture/2' })
  t.match(await scrape(first), /_count\{method="GET",route="\/fixture\/:id",status_code="200"\} 2$/m)
  await first.close()

  const second = await buildTestApp(t, { beforeReady: addFixtureRoute })
  await second.inject({ url: '/fixture/3' })
  const body = await scrape(second)
  t.match(body, /^process_resident_memory_bytes \d+$/m)
  t.match(body, /_count\{method="GET",route="\/fixture\/:id",status_code="200"\} 1$/m, 'counts start again from zero')
})
