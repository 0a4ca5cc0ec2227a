import t from 'tap'
import { assertProblem, buildTestApp } from '../helper.ts'

// Issue 8, finding 1: export filters took any RFC 3339 date-time, also ones PostgreSQL cannot
// hold (year 0000, offsets beyond ±15:59): a stream answered 500 and stopped the process, an
// async export was accepted and then failed. Filters now follow the imports' timestamp rule.

const unrepresentable: [string, string][] = [
  ['0000-01-01T00:00:00Z', 'year 0000, which PostgreSQL lacks'],
  ['2024-01-01T00:00:00-20:40', 'an offset beyond ±15:59'],
  ['2024-01-01T00:00:00+16:00', 'the first offset past ±15:59'],
  ['2023-02-29T00:00:00Z', 'a day that does not exist'],
  ['2024-01-01T23:59:60Z', 'a leap second PostgreSQL would roll into the next minute'],
  ['2024-01-01T00:00:00.1234567Z', 'a seventh fractional digit PostgreSQL would round'],
  ['2024-01-01T00:00:00', 'no zone'],
]

t.test('a stream filter PostgreSQL cannot hold is a 400 problem naming it', async (t) => {
  const app = await buildTestApp(t)
  for (const [value, why] of unrepresentable) {
    const response = await app.inject({
      url: `/api/v1/exports/users/stream?updated_before=${encodeURIComponent(value)}`,
    })
    t.equal(response.statusCode, 400, `${value}: ${why}`)
    assertProblem(
      t,
      response,
      'validation_failed',
      'querystring.updated_before must match format "date-time-with-zone".',
      {
        errors: [
          {
            in: 'querystring',
            name: 'updated_before',
            pointer: '/updated_before',
            reason: 'must match format "date-time-with-zone"',
          },
        ],
      },
    )
  }
})

t.test('an async export with such a filter is refused at once, not failed later', async (t) => {
  const app = await buildTestApp(t)
  const requests: [string, Record<string, string>][] = [
    ['users', { created_after: '0000-01-01T00:00:00Z' }],
    ['articles', { published_before: '2024-01-01T00:00:00-20:40' }],
    ['comments', { created_before: '2023-02-29T00:00:00Z' }],
  ]
  for (const [resource, filters] of requests) {
    const [name] = Object.keys(filters)
    const response = await app.inject({
      method: 'POST',
      url: '/api/v1/exports',
      payload: { resource, format: 'ndjson', filters },
    })
    assertProblem(t, response, 'validation_failed', `body.filters.${name} must match format "date-time-with-zone".`, {
      errors: [
        {
          in: 'body',
          name: `filters.${name}`,
          pointer: `/filters/${name}`,
          reason: 'must match format "date-time-with-zone"',
        },
      ],
    })
  }
  const [jobs] = await app.sql<{ count: number }[]>`select count(*)::int as count from export_jobs`
  t.equal(jobs?.count, 0, 'no job was created')
})

t.test('timestamps at the edges PostgreSQL holds are accepted by streams and async exports', async (t) => {
  const app = await buildTestApp(t)
  await app.sql`insert into users (email, name, role) values ('a@example.com', 'A', 'reader')`
  const representable = [
    '0001-01-01T00:00:00+15:59',
    '9999-12-31T23:59:59.999999-15:59',
    '2024-02-29 12:00Z',
    '2024-05-01T10:00:00+0200',
  ]
  for (const value of representable) {
    const stream = await app.inject({
      url: `/api/v1/exports/users/stream?fields=email&created_after=${encodeURIComponent(value)}`,
    })
    t.equal(stream.statusCode, 200, `stream, ${value}`)
    const job = await app.inject({
      method: 'POST',
      url: '/api/v1/exports',
      payload: { resource: 'users', format: 'csv', filters: { created_before: value } },
    })
    t.equal(job.statusCode, 202, `async export, ${value}`)
  }
  const everyone = await app.inject({
    url: '/api/v1/exports/users/stream?fields=email&created_after=0001-01-01T00:00:00%2B15:59',
  })
  t.equal(everyone.body, '{"email":"a@example.com"}\n', 'the filter applies as written')
})
