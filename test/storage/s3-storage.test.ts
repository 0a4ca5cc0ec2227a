import { readdir } from 'node:fs/promises'
import { request } from 'node:http'
import { DeleteObjectCommand, ListMultipartUploadsCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import t from 'tap'
import type { ExportJob } from '../../schemas/exports.ts'
import type { ImportJob } from '../../schemas/imports.ts'
import { createTestDatabase } from '../db.ts'
import {
  buildTestApp,
  countRows,
  importAndWait,
  startImport,
  until,
  uploadImport,
  usersCsv,
  waitForImport,
} from '../helper.ts'
import { importSource, s3Fixture, waitForExport } from '../setup/s3-fixture.ts'

// STORAGE=s3 against a real S3-compatible server (test/setup/s3-server.ts: OpenStack Swift, which
// checks signatures, presigned URLs, multipart uploads and ranges as S3 does): uploads, imports,
// exports, direct uploads and s3:// sources go through the bucket and nothing through the disk;
// a store that refuses gives clear problems (the store going away: store-faults.long.test.ts).

const BUCKET = 'bulk-io'
const SOURCES = 'bulk-io-sources'
const fixture = s3Fixture(t, [BUCKET, SOURCES])
const { app: s3App, keys } = fixture

t.test('an upload streams into the bucket; the import reads it there; its failed records too', async (t) => {
  const app = await s3App(t, 'upload/')
  const file = `${usersCsv(3000)}not-an-email,Bad,reader\n`
  const job = await importAndWait(app, { resource: 'users', file, filename: 'users.csv' })
  t.equal(job.status, 'completed')
  t.match(job.counters, { processed: 3001, inserted: 3000, failed: 1 })
  t.same(
    await keys('upload/'),
    [`upload/imports/${(await importSource(app, job.id)) ?? ''}`],
    'the upload is in the bucket',
  )
  t.same(await readdir(app.storage.importDir), [], 'nothing on the disk')
  const failed = await app.inject({ url: `/api/v1/imports/${job.id}/failed-records` })
  t.equal(failed.body, 'email,name,role\nnot-an-email,Bad,reader\n', 'failed records read back from the bucket')
})

t.test('an empty or binary file is refused at once, as with files on disk', async (t) => {
  const app = await s3App(t, 'refused/')
  const empty = await uploadImport(app, { resource: 'users', file: '', filename: 'users.csv' })
  t.equal(empty.statusCode, 422)
  t.match(empty.json().detail, /empty/)
  const binary = await uploadImport(app, { resource: 'users', file: Buffer.from([0, 1, 2, 3]), filename: 'users.csv' })
  t.equal(binary.statusCode, 422)
  t.same(await keys('refused/'), [], 'a refused upload is removed from the bucket')
})

t.test('an export is written to the bucket; it downloads whole, by range, and redirected', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const app = await s3App(t, 'export/', {}, databaseUrl)
  await importAndWait(app, { resource: 'users', file: usersCsv(2000), filename: 'users.csv' })
  const created = await app.inject({
    method: 'POST',
    url: '/api/v1/exports',
    payload: { resource: 'users', format: 'csv' },
  })
  const job = await waitForExport(app, created.json<ExportJob>().id)
  t.equal(job.status, 'completed')
  t.same(await keys('export/exports/'), [`export/exports/${job.id}.csv`])
  t.same(await readdir(app.storage.exportDir), [], 'nothing on the disk')

  const whole = await app.inject({ url: `/api/v1/exports/${job.id}/download` })
  t.equal(whole.statusCode, 200)
  t.equal(whole.body.trimEnd().split('\n').length, 2001, 'a header and every row')
  t.equal(Number(whole.headers['content-length']), job.counters.bytes)
  const etag = whole.headers.etag as string
  const ranged = await app.inject({ url: `/api/v1/exports/${job.id}/download`, headers: { range: 'bytes=100-199' } })
  t.equal(ranged.statusCode, 206)
  t.equal(ranged.headers['content-range'], `bytes 100-199/${job.counters.bytes}`)
  t.equal(ranged.body, whole.body.slice(100, 200))
  const unchanged = await app.inject({ url: `/api/v1/exports/${job.id}/download`, headers: { 'if-none-match': etag } })
  t.equal(unchanged.statusCode, 304)

  // Another instance on the same database, set to redirect: the store serves the bytes.
  const redirecting = await s3App(t, 'export/', { EXPORT_DOWNLOAD_REDIRECT: 'true', RUN_JOBS: 'false' }, databaseUrl)
  const redirect = await redirecting.inject({ url: `/api/v1/exports/${job.id}/download` })
  t.equal(redirect.statusCode, 302)
  const location = redirect.headers.location as string
  t.match(location, /X-Amz-Signature=/, 'a presigned URL')
  const fetched = await fetch(location, { headers: { range: 'bytes=100-199' } })
  t.equal(fetched.status, 206)
  t.equal(await fetched.text(), whole.body.slice(100, 200), 'the same bytes, by range, from the store')
  t.match(fetched.headers.get('content-disposition'), /attachment; filename="users-/)
})

t.test('an s3:// import reads an object of an allowed bucket where it is', async (t) => {
  const app = await s3App(t, 'sources/', { S3_IMPORT_BUCKETS: SOURCES })
  await fixture.s3.send(new PutObjectCommand({ Bucket: SOURCES, Key: 'daily/users.csv', Body: usersCsv(500) }))
  const started = await app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    payload: { resource: 'users', url: `s3://${SOURCES}/daily/users.csv` },
  })
  t.equal(started.statusCode, 202, `202 (${started.statusCode === 202 ? 'ok' : started.body})`)
  const job = await waitForImport(app, started.json<ImportJob>().id)
  t.equal(job.status, 'completed')
  t.equal(job.counters.inserted, 500)
  t.same(await keys('sources/imports/'), [], 'nothing copied into the service’s prefix')

  const other = await app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    payload: { resource: 'users', url: `s3://${BUCKET}/anything.csv` },
  })
  t.equal(other.statusCode, 422)
  t.match(other.json().detail, /not one of S3_IMPORT_BUCKETS/)
  const missing = await app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    payload: { resource: 'users', url: `s3://${SOURCES}/no/such.csv` },
  })
  t.equal(missing.statusCode, 422)
  t.match(missing.json().detail, /There is no object s3:\/\/bulk-io-sources\/no\/such\.csv/)
})

t.test('a wrong secret or a missing bucket stops the start, saying which', async (t) => {
  process.env.AWS_SECRET_ACCESS_KEY = 'wrong'
  await t.rejects(buildTestApp(t, { environment: fixture.environment('x/') }), {
    message:
      /^STORAGE=s3: the service cannot write, read and delete objects under s3:\/\/bulk-io\/x\/ at http:\/\/127\.0\.0\.1:\d+: access denied/,
  })
  process.env.AWS_SECRET_ACCESS_KEY = fixture.server.secretAccessKey
  await t.rejects(buildTestApp(t, { environment: { ...fixture.environment('x/'), S3_BUCKET: 'no-such-bucket' } }), {
    message: /the bucket does not exist/,
  })
})

t.test('an upload broken off mid-way leaves nothing in the bucket: its multipart upload is aborted', async (t) => {
  const app = await s3App(t, 'broken/', { S3_PART_BYTES: String(5 * 1024 * 1024) })
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  const boundary = 'brokenoff'
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="resource"\r\n\r\nusers\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="users.csv"\r\n\r\n`,
  )
  const body = Buffer.from(usersCsv(200_000)) // ~6 MB: more than a part
  await new Promise<void>((resolve) => {
    const sent = request(`${address}/api/v1/imports`, {
      method: 'POST',
      headers: {
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'content-length': head.length + body.length + 100,
      },
    })
    sent.on('error', () => resolve())
    sent.write(head)
    sent.write(body.subarray(0, 5.5 * 1024 * 1024), () => {
      // A part is on its way to the store; the client goes away.
      setTimeout(() => {
        sent.destroy()
        resolve()
      }, 500)
    })
  })
  const uploads = await until(
    async () => {
      const listed = await fixture.s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: 'broken/' }))
      return (listed.Uploads ?? []).length === 0 ? listed : undefined
    },
    'the multipart upload to be aborted',
    10_000,
  )
  t.same(uploads.Uploads ?? [], [], 'no multipart upload left')
  t.same(await keys('broken/'), [], 'no object')
  t.equal(await countRows(app, 'import_jobs'), 0, 'no job')
})

t.test('a source the store no longer has fails its job with source_unavailable', async (t) => {
  const app = await buildTestApp(t, { environment: fixture.environment('gone/') })
  const { id } = await startImport(app, 'users', usersCsv(100), 'users.csv')
  const source = await importSource(app, id)
  await fixture.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: `gone/imports/${source}` }))
  app.jobs.start()
  const job = await waitForImport(app, id)
  t.equal(job.status, 'failed')
  t.match(job.error, {
    code: 'source_unavailable',
    status: 422,
    detail: /^The source cannot be read from the store \(not_found\): s3:\/\/bulk-io\/gone\/imports\/.*\.upload/,
  })
})
