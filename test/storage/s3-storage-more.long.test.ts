import { CreateMultipartUploadCommand, ListMultipartUploadsCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import t from 'tap'
import type { ImportJob } from '../../schemas/imports.ts'
import type { Upload } from '../../schemas/uploads.ts'
import { createTestDatabase } from '../db.ts'
import { buildTestApp, generated, importAndWait, until, usersCsv, waitForImport } from '../helper.ts'
import { importSource, s3Fixture, usersDigest } from '../setup/s3-fixture.ts'

// STORAGE=s3 against Swift (test/setup/s3-server.ts), the longer cases: a direct upload of
// several parts imported as a form upload of the same file is, and the sweeper of what no job
// refers to (it waits for objects to age). The others: s3-storage.test.ts.

const BUCKET = 'bulk-io'
const SOURCES = 'bulk-io-sources'
const fixture = s3Fixture(t, [BUCKET, SOURCES])
const { app: s3App, keys } = fixture

t.test('a direct upload of several parts through presigned URLs, then an import of it', async (t) => {
  const app = await s3App(t, 'direct/', { S3_PART_BYTES: String(5 * 1024 * 1024) })
  const file = await generated({ resource: 'users', format: 'csv', rows: 45_000, defectRate: 0.01, seed: 3 })
  const created = await app.inject({
    method: 'POST',
    url: '/api/v1/uploads',
    payload: { size_bytes: file.length, filename: 'users.csv' },
  })
  t.equal(created.statusCode, 201, `201 (${created.statusCode === 201 ? 'ok' : created.body})`)
  const upload = created.json<Upload>()
  t.equal(upload.status, 'pending')
  t.equal(upload.url, null)
  t.equal(upload.part_size_bytes, 5 * 1024 * 1024)
  t.equal(upload.parts.length, Math.ceil(file.length / (5 * 1024 * 1024)))
  t.ok(upload.parts.length >= 2, `${upload.parts.length} parts`)

  const early = await app.inject({ method: 'POST', url: upload.complete_url, payload: { parts: [] } })
  t.equal(early.statusCode, 400, 'completing without the parts is refused')

  const etags: { part_number: number; etag: string }[] = []
  for (const part of upload.parts) {
    const from = (part.part_number - 1) * (upload.part_size_bytes as number)
    const body = file.subarray(from, from + (upload.part_size_bytes as number))
    const put = await fetch(part.url, { method: 'PUT', body })
    t.equal(put.status, 200, `part ${part.part_number} is up`)
    etags.push({ part_number: part.part_number, etag: put.headers.get('etag') as string })
  }
  const wrong = etags.map((part, index) => (index === 1 ? { ...part, etag: '"0000"' } : part))
  const refused = await app.inject({ method: 'POST', url: upload.complete_url, payload: { parts: wrong } })
  t.equal(refused.statusCode, 409, 'a wrong ETag: the store cannot assemble it')
  const completed = await app.inject({ method: 'POST', url: upload.complete_url, payload: { parts: etags } })
  t.equal(completed.statusCode, 200, `200 (${completed.statusCode === 200 ? 'ok' : completed.body})`)
  t.match(completed.json<Upload>(), { status: 'completed', size_bytes: file.length, parts: [] })

  const started = await app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    payload: { resource: 'users', upload_id: upload.id },
  })
  t.equal(started.statusCode, 202, `202 (${started.statusCode === 202 ? 'ok' : started.body})`)
  const job = await waitForImport(app, started.json<ImportJob>().id)
  t.equal(job.status, 'completed')
  t.equal(job.counters.processed, 45_000)
  t.equal(job.source.size_bytes, file.length)

  // The same file through the multipart form of another app, as the reference.
  const reference = await buildTestApp(t)
  reference.jobs.start()
  const referenceJob = await importAndWait(reference, { resource: 'users', file, filename: 'users.csv' })
  t.same(job.counters, referenceJob.counters, 'the same counters as an upload through the service')
  t.same(await usersDigest(app), await usersDigest(reference), 'the same rows')

  const small = await app.inject({ method: 'POST', url: '/api/v1/uploads', payload: { size_bytes: 100 } })
  t.match(small.json<Upload>(), { parts: [], part_size_bytes: null }, 'a small file: one PUT')
  t.match(small.json<Upload>().url, /X-Amz-Signature=/)
  const none = await app.inject({ method: 'POST', url: small.json<Upload>().complete_url, payload: {} })
  t.equal(none.statusCode, 409, 'nothing was put yet')
  const pending = await app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    payload: { resource: 'users', upload_id: small.json<Upload>().id },
  })
  t.equal(pending.statusCode, 422, 'a pending upload cannot be imported')

  const fsApp = await buildTestApp(t)
  const fsUpload = await fsApp.inject({ method: 'POST', url: '/api/v1/uploads', payload: { size_bytes: 100 } })
  t.equal(fsUpload.statusCode, 409, 'STORAGE=fs: no direct uploads')
})

t.test(
  'the sweeper removes objects no job refers to and unfinished multipart uploads, and keeps the rest',
  async (t) => {
    const databaseUrl = await createTestDatabase(t)
    const first = await s3App(t, 'sweep/', {}, databaseUrl)
    const job = await importAndWait(first, { resource: 'users', file: usersCsv(10), filename: 'users.csv' })
    const source = await importSource(first, job.id)
    const orphan = `sweep/imports/${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}.upload`
    await fixture.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: orphan, Body: 'orphan' }))
    await fixture.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'sweep/exports/nobodys.csv', Body: 'orphan' }))
    await fixture.s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'sweep/exports/dead-owner.csv' }))
    await first.close()
    await new Promise((resolve) => setTimeout(resolve, 2100))
    // A new instance sweeps at start: objects (and uploads) older than STORE_ORPHAN_SECONDS go.
    await s3App(t, 'sweep/', { STORE_ORPHAN_SECONDS: '2' }, databaseUrl)
    // It sweeps at start, then every second (half of STORE_ORPHAN_SECONDS).
    const unfinished = async () =>
      (await fixture.s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: 'sweep/' }))).Uploads ?? []
    await until(
      async () => ((await keys('sweep/')).length === 1 && (await unfinished()).length === 0 ? true : undefined),
      'the sweep',
      15_000,
    ).catch(() => {})
    t.same(await keys('sweep/'), [`sweep/imports/${source}`], 'the job’s source stays, the orphans go')
    t.same(await unfinished(), [], 'the unfinished upload is aborted')
  },
)
