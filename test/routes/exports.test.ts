import { createHash } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { gunzipSync } from 'node:zlib'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import type { ExportJob } from '../../schemas/exports.ts'
import { assertProblem, buildTestApp } from '../helper.ts'

// Async export jobs (issue 4): create, follow, list, download with ETag, Range and If-Range,
// expiry, idempotency, and bad requests.

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex')
}

async function seedUsers(app: FastifyInstance, count: number): Promise<void> {
  await app.sql`
    insert into users (email, name, role, active)
    select 'user' || g || '@example.com', 'User ' || g, case when g % 5 = 0 then 'admin' else 'reader' end, true
    from generate_series(1, ${count}) g`
}

async function startedApp(t: Test, environment: Record<string, string> = {}): Promise<FastifyInstance> {
  const app = await buildTestApp(t, { environment })
  app.jobs.start()
  return app
}

function createExport(app: FastifyInstance, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url: '/api/v1/exports', payload: body, headers })
}

async function waitForExport(app: FastifyInstance, id: string): Promise<ExportJob> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const job = (await app.inject({ url: `/api/v1/exports/${id}` })).json<ExportJob>()
    if (job.done) return job
    if (Date.now() > deadline) throw new Error(`export ${id} not done: ${JSON.stringify(job)}`)
    await sleep(50)
  }
}

async function exportAndWait(app: FastifyInstance, body: Record<string, unknown>): Promise<ExportJob> {
  const response = await createExport(app, body)
  if (response.statusCode !== 202) throw new Error(`export refused: ${response.statusCode} ${response.body}`)
  return waitForExport(app, response.json<ExportJob>().id)
}

t.test('POST starts a job: 202, Location, then a completed file with rows, bytes and SHA-256', async (t) => {
  const app = await startedApp(t)
  await seedUsers(app, 1000)
  const response = await createExport(app, { resource: 'users', format: 'csv', filters: { role: 'admin' } })
  t.equal(response.statusCode, 202)
  const created = response.json<ExportJob>()
  t.match(created.id, uuid)
  t.equal(response.headers.location, `/api/v1/exports/${created.id}`)
  t.match(created, {
    resource: 'users',
    format: 'csv',
    status: 'queued',
    done: false,
    counters: { rows: 0, bytes: 0 },
    fields: ['id', 'email', 'name', 'role', 'active', 'created_at', 'updated_at'],
    filters: { role: 'admin' },
    compression: 'none',
    download_url: null,
    sha256: null,
    expires_at: null,
    expired: false,
    error: null,
  })

  const job = await waitForExport(app, created.id)
  t.equal(job.status, 'completed')
  t.equal(job.counters.rows, 200)
  t.equal(job.download_url, `/api/v1/exports/${job.id}/download`)
  const download = await app.inject({ url: job.download_url as string })
  t.equal(download.statusCode, 200)
  t.equal(download.headers['content-type'], 'text/csv; charset=utf-8')
  t.match(download.headers['content-disposition'], /^attachment; filename="users-[\dT-]+Z\.csv"$/)
  t.equal(download.headers.etag, `"${job.sha256}"`)
  t.equal(download.headers['accept-ranges'], 'bytes')
  t.equal(sha256(download.rawPayload), job.sha256, 'the ETag is the SHA-256 of the file')
  t.equal(download.rawPayload.length, job.counters.bytes)
  const stream = await app.inject({ url: '/api/v1/exports/users/stream?format=csv&role=admin' })
  t.equal(download.body, stream.body, 'the same rows as the stream of the same query')
  const expiresIn = Date.parse(job.expires_at as string) - Date.parse(job.finished_at as string)
  t.ok(Math.abs(expiresIn - 86_400_000) < 1000, 'expires EXPORT_TTL_SECONDS after completion')
  t.same(await readdir(app.storage.exportDir), [`${job.id}.csv`], 'no partial file left')
})

t.test('Range, If-Range and If-None-Match on a finished export', async (t) => {
  const app = await startedApp(t)
  await seedUsers(app, 300)
  const job = await exportAndWait(app, { resource: 'users', format: 'ndjson' })
  const url = `/api/v1/exports/${job.id}/download`
  const whole = (await app.inject({ url })).rawPayload
  const size = whole.length
  const etag = `"${job.sha256}"`

  const first = await app.inject({ url, headers: { range: 'bytes=0-99' } })
  t.equal(first.statusCode, 206)
  t.equal(first.headers['content-range'], `bytes 0-99/${size}`)
  t.same(first.rawPayload, whole.subarray(0, 100))
  const rest = await app.inject({ url, headers: { range: 'bytes=100-' } })
  t.same(Buffer.concat([first.rawPayload, rest.rawPayload]), whole, 'two ranges resume the download exactly')
  const suffix = await app.inject({ url, headers: { range: 'bytes=-10' } })
  t.equal(suffix.headers['content-range'], `bytes ${size - 10}-${size - 1}/${size}`)
  t.same(suffix.rawPayload, whole.subarray(size - 10))
  const clipped = await app.inject({ url, headers: { range: `bytes=${size - 5}-${size + 1000}` } })
  t.equal(clipped.headers['content-range'], `bytes ${size - 5}-${size - 1}/${size}`)

  const current = await app.inject({ url, headers: { range: 'bytes=0-9', 'if-range': etag } })
  t.equal(current.statusCode, 206, 'If-Range with the current ETag: the range')
  const stale = await app.inject({ url, headers: { range: 'bytes=0-9', 'if-range': '"another-version"' } })
  t.equal(stale.statusCode, 200, 'If-Range with another ETag: the whole file')
  t.equal(stale.rawPayload.length, size)
  const several = await app.inject({ url, headers: { range: 'bytes=0-1,5-6' } })
  t.equal(several.statusCode, 200, 'several ranges: the whole file')

  const head = await app.inject({ method: 'HEAD', url })
  t.equal(head.statusCode, 200)
  t.equal(head.headers['content-length'], String(size), 'HEAD: the headers of the whole file')
  t.equal(head.body, '')

  const notModified = await app.inject({ url, headers: { 'if-none-match': etag } })
  t.equal(notModified.statusCode, 304)
  t.equal(notModified.body, '')

  const beyond = await app.inject({ url, headers: { range: `bytes=${size}-` } })
  assertProblem(t, beyond, 'range_not_satisfiable', `The file has ${size} bytes; the range starts past its end.`)
  t.equal(beyond.headers['content-range'], `bytes */${size}`)
})

t.test('compression gzip writes a gzip file of the same rows, fields in the order asked', async (t) => {
  const app = await startedApp(t)
  await seedUsers(app, 100)
  const job = await exportAndWait(app, {
    resource: 'users',
    format: 'json',
    fields: ['email', 'id'],
    compression: 'gzip',
  })
  t.equal(job.counters.rows, 100)
  const download = await app.inject({ url: job.download_url as string })
  t.equal(download.headers['content-type'], 'application/gzip')
  t.match(download.headers['content-disposition'], /\.json\.gz"$/)
  t.equal(download.rawPayload.length, job.counters.bytes, 'bytes counts the compressed file')
  const rows = JSON.parse(gunzipSync(download.rawPayload).toString()) as Record<string, string>[]
  t.equal(rows.length, 100)
  t.same(Object.keys(rows[0] ?? {}), ['email', 'id'])
})

t.test('an expired export says so, its download is 410 Gone, and its file is deleted', async (t) => {
  const app = await startedApp(t, { EXPORT_TTL_SECONDS: '1' })
  await seedUsers(app, 10)
  const job = await exportAndWait(app, { resource: 'users', format: 'csv' })
  t.equal(job.expired, false)
  await sleep(Math.max(0, Date.parse(job.expires_at as string) - Date.now()) + 50)

  const expired = (await app.inject({ url: `/api/v1/exports/${job.id}` })).json<ExportJob>()
  t.match(expired, { status: 'completed', expired: true, download_url: null })
  const download = await app.inject({ url: `/api/v1/exports/${job.id}/download` })
  assertProblem(
    t,
    download,
    'gone',
    `The export expired at ${job.expires_at} and its file was deleted; start a new export.`,
  )
  let files = await readdir(app.storage.exportDir)
  for (let attempt = 0; attempt < 40 && files.length > 0; attempt++) {
    await sleep(100)
    files = await readdir(app.storage.exportDir)
  }
  t.same(files, [], 'the sweeper deleted the file')
})

t.test('expired exports are counted by whether they were ever downloaded', async (t) => {
  const app = await startedApp(t, { EXPORT_TTL_SECONDS: '1' })
  await seedUsers(app, 10)
  const fetched = await exportAndWait(app, { resource: 'users', format: 'csv' })
  await exportAndWait(app, { resource: 'users', format: 'ndjson' })
  t.equal((await app.inject({ url: `/api/v1/exports/${fetched.id}/download` })).statusCode, 200)
  const counted = async () => {
    const metrics = (await app.inject({ url: '/metrics' })).body
    const value = (fetchedLabel: string) =>
      Number(
        new RegExp(`^bulkio_exports_expired_total\\{resource="users",fetched="${fetchedLabel}"\\} (\\d+)$`, 'm').exec(
          metrics,
        )?.[1],
      )
    return { true: value('true'), false: value('false') }
  }
  t.same(await counted(), { true: 0, false: 0 }, 'both series exist before any expiry')
  let seen = await counted()
  for (let attempt = 0; attempt < 60 && seen.true + seen.false < 2; attempt++) {
    await sleep(100)
    seen = await counted()
  }
  t.same(seen, { true: 1, false: 1 }, 'one expired after its download, one unread')
})

t.test('Idempotency-Key: 20 identical requests make one job; another body is a 422', async (t) => {
  const app = await buildTestApp(t)
  const body = { resource: 'articles', format: 'ndjson', filters: { status: 'published', tag: 'news' } }
  const responses = await Promise.all(
    Array.from({ length: 20 }, () => createExport(app, body, { 'idempotency-key': 'export-once' })),
  )
  t.same(new Set(responses.map((response) => response.statusCode)), new Set([202]))
  const ids = new Set(responses.map((response) => response.json<ExportJob>().id))
  t.equal(ids.size, 1, 'one job')
  t.equal(responses.filter((response) => response.headers['idempotent-replayed'] === 'true').length, 19)
  const [row] = await app.sql<{ count: number }[]>`select count(*)::int as count from export_jobs`
  t.equal(row?.count, 1)
  // The same filters in another order are the same request.
  const reordered = await createExport(
    app,
    { resource: 'articles', format: 'ndjson', filters: { tag: 'news', status: 'published' } },
    { 'idempotency-key': 'export-once' },
  )
  t.equal(reordered.headers['idempotent-replayed'], 'true')
  const other = await createExport(app, { ...body, format: 'csv' }, { 'idempotency-key': 'export-once' })
  assertProblem(t, other, 'unprocessable', 'This Idempotency-Key was used for another export request; use a new key.')
})

t.test('GET lists export jobs newest first with a cursor, and filters by resource and status', async (t) => {
  const app = await buildTestApp(t)
  for (const resource of ['users', 'articles', 'comments', 'users', 'users']) {
    await createExport(app, { resource, format: 'csv' })
  }
  const first = (await app.inject({ url: '/api/v1/exports?resource=users&limit=2' })).json()
  t.equal(first.items.length, 2)
  t.ok(first.next_cursor)
  const second = (
    await app.inject({ url: `/api/v1/exports?resource=users&limit=2&cursor=${first.next_cursor}` })
  ).json()
  t.equal(second.items.length, 1)
  t.equal(second.next_cursor, null)
  const all = [...first.items, ...second.items] as ExportJob[]
  t.ok(
    all.every((job) => job.resource === 'users' && job.status === 'queued'),
    'only users jobs',
  )
  t.equal(new Set(all.map((job) => job.id)).size, 3)
  const completed = (await app.inject({ url: '/api/v1/exports?status=completed' })).json()
  t.same(completed.items, [])
  const bad = await app.inject({ url: '/api/v1/exports?cursor=bm9wZQ' })
  assertProblem(t, bad, 'bad_request', 'The cursor is not one this service gave out.')
})

t.test('unknown jobs are 404; a job not yet completed has nothing to download (409)', async (t) => {
  const app = await buildTestApp(t) // its runner is not started: jobs stay queued
  const missing = await app.inject({ url: '/api/v1/exports/00000000-0000-4000-8000-000000000000' })
  assertProblem(t, missing, 'not_found', 'There is no export job 00000000-0000-4000-8000-000000000000.')
  const notUuid = await app.inject({ url: '/api/v1/exports/42' })
  t.equal(notUuid.statusCode, 400)
  const queued = (await createExport(app, { resource: 'comments', format: 'json' })).json<ExportJob>()
  const download = await app.inject({ url: `/api/v1/exports/${queued.id}/download` })
  assertProblem(t, download, 'conflict', 'The export is queued, not completed: there is no file to download.')
})

t.test('bad export requests get 400 problems naming every failing field', async (t) => {
  const app = await buildTestApp(t)
  const cases: [Record<string, unknown>, string][] = [
    [{ resource: 'people', format: 'csv' }, 'body.resource must be one of users, articles, comments.'],
    [{ format: 'csv' }, 'body.resource is required.'],
    [{ resource: 'users', format: 'xml' }, 'body.format must be one of csv, ndjson, json.'],
    [
      { resource: 'users', format: 'csv', fields: ['id', 'slug'] },
      'body.fields.1 must be one of id, email, name, role, active, created_at, updated_at.',
    ],
    [{ resource: 'users', format: 'csv', filters: { status: 'draft' } }, 'body.filters.status is not a known field.'],
    [
      { resource: 'articles', format: 'csv', filters: { published_after: 'soon' } },
      'body.filters.published_after must match format "date-time-with-zone".',
    ],
    [{ resource: 'comments', format: 'csv', compression: 'zip' }, 'body.compression must be one of none, gzip.'],
    [{ resource: 'users', format: 'csv', limit: 5 }, 'body.limit is not a known field.'],
  ]
  for (const [body, detail] of cases) {
    const response = await createExport(app, body)
    t.equal(response.statusCode, 400, JSON.stringify(body))
    t.equal(response.json().detail, detail, JSON.stringify(body))
  }
  const [row] = await app.sql<{ count: number }[]>`select count(*)::int as count from export_jobs`
  t.equal(row?.count, 0, 'no job was created')
})

t.test('async exports count their rows and bytes in the metrics', async (t) => {
  const app = await startedApp(t)
  await seedUsers(app, 12)
  const job = await exportAndWait(app, { resource: 'users', format: 'ndjson' })
  let metrics = ''
  for (let attempt = 0; attempt < 20 && !metrics.includes('mode="async"} 12'); attempt++) {
    metrics = (await app.inject({ url: '/metrics' })).body
    await sleep(50)
  }
  t.match(metrics, /bulkio_export_rows_total\{resource="users",format="ndjson",mode="async"\} 12\n/)
  t.match(
    metrics,
    new RegExp(`bulkio_export_bytes_total\\{resource="users",format="ndjson",mode="async"\\} ${job.counters.bytes}\\n`),
  )
})
