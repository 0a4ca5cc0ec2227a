import { request as httpRequest, type IncomingMessage } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { gunzipSync } from 'node:zlib'
import { parse as parseCsv } from 'csv-parse/sync'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { assertProblem, buildTestApp } from '../helper.ts'

// GET /api/v1/exports/<resource>/stream (issue 4): formats, fields, filters, one snapshot,
// every row once in the table's storage order, gzip, formula escaping, the stream bound, and
// clients that leave.

const TIE = '2024-05-01T10:00:00.123456Z'
/** TIE as a CSV export writes it: PostgreSQL's own output, in UTC. */
const TIE_IN_CSV = '2024-05-01 10:00:00.123456+00'

/** `count` users (u1@example.com …) whose created_at and updated_at are all TIE. */
async function seedUsers(app: FastifyInstance, count: number, role = 'reader'): Promise<void> {
  await app.sql`
    insert into users (email, name, role, active, created_at, updated_at)
    select ${role} || g || '@example.com', 'User ' || g, ${role}, g % 2 = 0, ${TIE}::text::timestamptz, ${TIE}::text::timestamptz
    from generate_series(1, ${count}) g`
}

/** The users' ids in the order the table stores them (an export's order). */
async function userIds(app: FastifyInstance, where = app.sql`true`): Promise<string[]> {
  const rows = await app.sql<{ id: string }[]>`select id from users where ${where} order by ctid`
  return rows.map((row) => row.id)
}

/** GET on a real port; resolves with the response as soon as its headers arrive. */
function getStream(address: string, path: string, headers: Record<string, string> = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    httpRequest(`${address}${path}`, { headers }, resolve).on('error', reject).end()
  })
}

async function activeExportBackends(app: FastifyInstance): Promise<number> {
  const [row] = await app.sql<{ count: number }[]>`
    select count(*)::int as count from pg_stat_activity
    where application_name = 'bulk-io export' and state <> 'idle' and datname = current_database()`
  return row?.count ?? -1
}

t.test('users as CSV: a header, then every row in storage order, with the types the import reads back', async (t) => {
  const app = await buildTestApp(t)
  await seedUsers(app, 5)
  const response = await app.inject({ url: '/api/v1/exports/users/stream?format=csv' })
  t.equal(response.statusCode, 200)
  t.equal(response.headers['content-type'], 'text/csv; charset=utf-8')
  t.match(
    response.headers['content-disposition'],
    /^attachment; filename="users-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ\.csv"$/,
  )
  const rows = parseCsv(response.body, { columns: true }) as Record<string, string>[]
  t.same(
    rows.map((row) => row.id),
    await userIds(app),
  )
  t.same(Object.keys(rows[0] ?? {}), ['id', 'email', 'name', 'role', 'active', 'created_at', 'updated_at'])
  t.same(rows.map((row) => row.active).sort(), ['false', 'false', 'false', 'true', 'true'])
  t.ok(
    rows.every((row) => row.created_at === TIE_IN_CSV && row.updated_at === TIE_IN_CSV),
    'timestamps in UTC to the microsecond, as PostgreSQL writes them',
  )
})

t.test('NDJSON is the default format; JSON is one array; fields choose and order the columns', async (t) => {
  const app = await buildTestApp(t)
  await seedUsers(app, 3)
  const ids = await userIds(app)
  const ndjson = await app.inject({ url: '/api/v1/exports/users/stream?fields=email,id' })
  t.equal(ndjson.headers['content-type'], 'application/x-ndjson; charset=utf-8')
  const lines = ndjson.body.trimEnd().split('\n')
  t.same(
    lines.map((line) => Object.keys(JSON.parse(line))),
    [
      ['email', 'id'],
      ['email', 'id'],
      ['email', 'id'],
    ],
  )
  t.same(
    lines.map((line) => JSON.parse(line).id),
    ids,
  )

  const json = await app.inject({ url: '/api/v1/exports/users/stream?format=json&fields=id&fields=active' })
  t.equal(json.headers['content-type'], 'application/json; charset=utf-8')
  const rows = await app.sql<{ id: string; active: boolean }[]>`select id, active from users order by ctid`
  t.same(json.json(), rows, 'repeated fields work too')
  const empty = await app.inject({ url: '/api/v1/exports/comments/stream?format=json' })
  t.same(empty.body, '[]\n', 'no rows: an empty array')
})

t.test('filters select rows: users by role, active and ranges; articles by tag and author', async (t) => {
  const app = await buildTestApp(t)
  await seedUsers(app, 4, 'reader')
  await seedUsers(app, 3, 'admin')
  const admins = await app.inject({ url: '/api/v1/exports/users/stream?format=csv&role=admin&active=true' })
  const expected = await userIds(app, app.sql`role = 'admin' and active`)
  t.same(
    (parseCsv(admins.body, { columns: true }) as { id: string }[]).map((row) => row.id),
    expected,
  )
  t.equal(expected.length, 1)
  const before = await app.inject({ url: `/api/v1/exports/users/stream?created_before=${TIE}` })
  t.equal(before.body, '', '_before is exclusive')
  const after = await app.inject({ url: `/api/v1/exports/users/stream?created_after=${TIE}&fields=id` })
  t.equal(after.body.trimEnd().split('\n').length, 7, '_after is inclusive')

  const [author] = await userIds(app)
  await app.sql`
    insert into articles (slug, title, body, author_id, tags, status)
    values ('one', 'One', 'b', ${author as string}, ${['x', "it's"]}::text[], 'draft'),
      ('two', 'Two', 'b', ${author as string}, ${['y']}::text[], 'draft')`
  const tagged = await app.inject({ url: `/api/v1/exports/articles/stream?tag=${encodeURIComponent("it's")}` })
  t.same(
    tagged.body
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line).slug),
    ['one'],
    'a quote in a filter value is a value, not SQL',
  )
  const byAuthor = await app.inject({ url: `/api/v1/exports/articles/stream?author_id=${author}&status=draft` })
  t.equal(byAuthor.body.trimEnd().split('\n').length, 2)
})

t.test('rows with equal timestamps are each exported exactly once, in storage order', async (t) => {
  const app = await buildTestApp(t)
  await seedUsers(app, 5000)
  const ids = await userIds(app)
  for (const format of ['csv', 'ndjson', 'json'] as const) {
    const response = await app.inject({ url: `/api/v1/exports/users/stream?format=${format}&created_after=${TIE}` })
    const exported =
      format === 'csv'
        ? (parseCsv(response.body, { columns: true }) as { id: string }[]).map((row) => row.id)
        : format === 'json'
          ? response.json<{ id: string }[]>().map((row) => row.id)
          : response.body
              .trimEnd()
              .split('\n')
              .map((line) => JSON.parse(line).id as string)
    t.equal(new Set(exported).size, 5000, `${format}: no row repeated`)
    t.same(exported, ids, `${format}: every row, in the order the table stores them`)
  }
})

t.test('gzip when the client accepts it', async (t) => {
  const app = await buildTestApp(t)
  await seedUsers(app, 50)
  const plain = await app.inject({ url: '/api/v1/exports/users/stream?format=csv' })
  const compressed = await app.inject({
    url: '/api/v1/exports/users/stream?format=csv',
    headers: { 'accept-encoding': 'br;q=1, gzip;q=0.8' },
  })
  t.equal(compressed.headers['content-encoding'], 'gzip')
  t.equal(compressed.headers.vary, 'accept-encoding')
  t.equal(gunzipSync(compressed.rawPayload).toString(), plain.body)
  const refused = await app.inject({
    url: '/api/v1/exports/users/stream?format=csv',
    headers: { 'accept-encoding': 'gzip;q=0' },
  })
  t.equal(refused.headers['content-encoding'], undefined, 'q=0 refuses gzip')
})

t.test('EXPORT_CSV_ESCAPE_FORMULAS neutralises cells a spreadsheet would run, in CSV only', async (t) => {
  const app = await buildTestApp(t, { environment: { EXPORT_CSV_ESCAPE_FORMULAS: 'true' } })
  await app.sql`
    insert into users (email, name, role) values
      ('a@example.com', '=HYPERLINK("http://evil")', 'reader'), ('b@example.com', '+1', 'reader'),
      ('c@example.com', '-2', 'reader'), ('d@example.com', '@SUM(A1)', 'reader'), ('e@example.com', 'Plain = fine', 'reader')`
  const csv = await app.inject({ url: '/api/v1/exports/users/stream?format=csv&fields=email,name' })
  const names = (parseCsv(csv.body, { columns: true }) as { email: string; name: string }[])
    .sort((a, b) => a.email.localeCompare(b.email))
    .map((row) => row.name)
  t.same(names, ['\'=HYPERLINK("http://evil")', "'+1", "'-2", "'@SUM(A1)", 'Plain = fine'])
  const ndjson = await app.inject({ url: '/api/v1/exports/users/stream?fields=email,name' })
  t.ok(ndjson.body.includes('"=HYPERLINK'), 'NDJSON keeps the values as they are')
})

t.test('bad queries get 400 problems naming the failing parameter', async (t) => {
  const app = await buildTestApp(t)
  const cases: [string, string][] = [
    [
      '/api/v1/exports/users/stream?fields=id,password',
      'querystring.fields.1 must be one of id, email, name, role, active, created_at, updated_at.',
    ],
    ['/api/v1/exports/users/stream?role=boss', 'querystring.role must be one of admin, editor, author, reader.'],
    ['/api/v1/exports/users/stream?active=maybe', 'querystring.active must be boolean.'],
    [
      '/api/v1/exports/users/stream?created_after=yesterday',
      'querystring.created_after must match format "date-time-with-zone".',
    ],
    ['/api/v1/exports/users/stream?format=xml', 'querystring.format must be one of csv, ndjson, json.'],
    ['/api/v1/exports/users/stream?status=draft', 'querystring.status is not a known field.'],
    ['/api/v1/exports/articles/stream?author_id=42', 'querystring.author_id must match format "uuid".'],
    [
      '/api/v1/exports/comments/stream?fields=',
      'querystring.fields.0 must be one of id, article_id, user_id, body, created_at.',
    ],
  ]
  for (const [url, detail] of cases) {
    const response = await app.inject({ url })
    t.equal(response.statusCode, 400, url)
    t.equal(response.json().detail, detail, url)
  }
  const unknown = await app.inject({ url: '/api/v1/exports/people/stream' })
  assertProblem(
    t,
    unknown,
    'bad_request',
    'There is no resource "people" to export; use one of users, articles, comments.',
  )
})

t.test('each stream reads one snapshot: rows committed while it runs are not in it', async (t) => {
  const app = await buildTestApp(t)
  await seedUsers(app, 60_000)
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const response = await getStream(address, '/api/v1/exports/users/stream?format=csv&fields=id')
  response.pause()
  // The export has started (headers are sent once PostgreSQL accepted the statement).
  await app.sql`
    insert into users (id, email, name, role)
    values ('ffffffff-ffff-4fff-bfff-ffffffffffff', 'late@example.com', 'Late', 'reader')`
  response.resume()
  let text = ''
  for await (const chunk of response) text += chunk
  const ids = text.trimEnd().split('\n').slice(1)
  t.equal(ids.length, 60_000, 'the rows of the snapshot')
  t.notOk(ids.includes('ffffffff-ffff-4fff-bfff-ffffffffffff'), 'not the row committed after it began')
})

t.test('a client that leaves after the first megabyte frees the backend, the slot and the memory', async (t) => {
  const app = await buildTestApp(t, { environment: { EXPORT_MAX_STREAMS: '1' } })
  await seedUsers(app, 300_000)
  const address = await app.listen({ port: 0, host: '127.0.0.1' })

  async function leaveAfterOneMegabyte(): Promise<void> {
    const response = await getStream(address, '/api/v1/exports/users/stream?format=ndjson')
    t.equal(response.statusCode, 200)
    let received = 0
    for await (const chunk of response) {
      received += chunk.length
      if (received > 1_048_576) break // leaving the loop destroys the response: the socket closes
    }
  }
  async function settled(): Promise<number> {
    for (let attempt = 0; attempt < 50 && (await activeExportBackends(app)) > 0; attempt++) await sleep(100)
    return activeExportBackends(app)
  }

  await leaveAfterOneMegabyte()
  t.equal(await settled(), 0, 'no export backend busy after the client left')
  const baseline = process.memoryUsage().rss
  for (let round = 0; round < 5; round++) {
    await leaveAfterOneMegabyte()
    await settled()
  }
  const growth = process.memoryUsage().rss - baseline
  t.ok(growth < 64 * 1024 * 1024, `memory grew ${Math.round(growth / 1024 / 1024)} MB over 5 abandoned exports`)
  const after = await app.inject({ url: '/api/v1/exports/users/stream?fields=id&role=admin' })
  t.equal(after.statusCode, 200, 'the only stream slot is free again (EXPORT_MAX_STREAMS=1)')
})

t.test('beyond EXPORT_MAX_STREAMS a stream gets a 429 problem with Retry-After', async (t) => {
  const app = await buildTestApp(t, { environment: { EXPORT_MAX_STREAMS: '1' } })
  await seedUsers(app, 100_000)
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const first = await getStream(address, '/api/v1/exports/users/stream')
  first.pause()
  const second = await app.inject({ url: '/api/v1/exports/users/stream' })
  assertProblem(
    t,
    second,
    'too_many_requests',
    '1 exports are streaming already (EXPORT_MAX_STREAMS); retry in a few seconds.',
  )
  t.equal(second.headers['retry-after'], '5')
  first.destroy()
})

t.test('streams count their rows and bytes in the metrics', async (t) => {
  const app = await buildTestApp(t)
  await seedUsers(app, 7)
  const exported = await app.inject({ url: '/api/v1/exports/users/stream?format=csv' })
  // The stream is counted once it has ended, which may be a moment after the response did.
  let metrics = ''
  for (let attempt = 0; attempt < 20 && !metrics.includes('mode="stream"} 7'); attempt++) {
    metrics = (await app.inject({ url: '/metrics' })).body
    await sleep(50)
  }
  t.match(metrics, /bulkio_export_rows_total\{resource="users",format="csv",mode="stream"\} 7\n/)
  t.match(
    metrics,
    new RegExp(
      `bulkio_export_bytes_total\\{resource="users",format="csv",mode="stream"\\} ${exported.rawPayload.length}\\n`,
    ),
  )
  t.match(metrics, /bulkio_export_duration_seconds_count\{resource="users",format="csv",mode="stream"\} 1\n/)
  t.match(metrics, /bulkio_export_streams_in_progress\{resource="users"\} 0\n/)
})
