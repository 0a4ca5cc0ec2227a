import { readdir } from 'node:fs/promises'
import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import type { ExportJob } from '../../schemas/exports.ts'
import type { ImportJob } from '../../schemas/imports.ts'
import type { Upload } from '../../schemas/uploads.ts'
import { createTestDatabase } from '../db.ts'
import { buildTestApp, generated, importAndWait, startImport, until, usersCsv, waitForImport } from '../helper.ts'
import { type S3Server, startS3Server } from '../setup/s3-server.ts'

// STORAGE=s3 against a real S3-compatible server (test/setup/s3-server.ts: OpenStack Swift, which
// checks signatures, presigned URLs, multipart uploads and ranges as S3 does): uploads, imports,
// exports, direct uploads and s3:// sources go through the bucket and nothing through the disk;
// a store that refuses or goes away gives clear problems, and its jobs resume when it is back.

let server: S3Server
let s3: S3Client
const BUCKET = 'bulk-io'
const SOURCES = 'bulk-io-sources'

t.before(async () => {
  server = await startS3Server()
  // The service takes its credentials from the AWS chain: here, the environment (its threads too).
  process.env.AWS_ACCESS_KEY_ID = server.accessKeyId
  process.env.AWS_SECRET_ACCESS_KEY = server.secretAccessKey
  s3 = new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }))
  await s3.send(new CreateBucketCommand({ Bucket: SOURCES }))
})
t.teardown(async () => {
  s3?.destroy()
  delete process.env.AWS_ACCESS_KEY_ID
  delete process.env.AWS_SECRET_ACCESS_KEY
  await server?.stop()
})

function s3Environment(prefix: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    STORAGE: 's3',
    S3_ENDPOINT: server.endpoint,
    S3_REGION: server.region,
    S3_BUCKET: BUCKET,
    S3_PREFIX: prefix,
    S3_FORCE_PATH_STYLE: 'true',
    S3_MAX_ATTEMPTS: '2',
    JOB_POLL_INTERVAL_MS: '100',
    ...extra,
  }
}

async function s3App(t: Test, prefix: string, extra: Record<string, string> = {}, databaseUrl?: string) {
  const app = await buildTestApp(t, { environment: s3Environment(prefix, extra), databaseUrl })
  app.jobs.start()
  return app
}

async function keys(prefix: string): Promise<string[]> {
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }))
  return (listed.Contents ?? []).map((object) => object.Key as string).sort()
}

/** A digest of the users table, by natural key (rows without an id in the file get a random one). */
async function usersDigest(app: FastifyInstance) {
  const [row] = await app.sql<{ users: number; digest: string }[]>`
    select count(*)::int as users,
      md5(string_agg(concat_ws('|', email, name, role, active, created_at, updated_at), ',' order by lower(email))) as digest
    from users`
  return row
}

async function waitForExport(app: FastifyInstance, id: string): Promise<ExportJob> {
  return until(async () => {
    const job = (await app.inject({ url: `/api/v1/exports/${id}` })).json<ExportJob>()
    return job.done ? job : undefined
  }, `export ${id}`)
}

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

async function importSource(app: FastifyInstance, id: string): Promise<string | undefined> {
  const [row] = await app.sql<{ source_path: string }[]>`select source_path from import_jobs where id = ${id}`
  return row?.source_path
}

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

t.test('a direct upload of several parts through presigned URLs, then an import of it', async (t) => {
  const app = await s3App(t, 'direct/', { S3_PART_BYTES: String(5 * 1024 * 1024) })
  const file = await generated({ resource: 'users', format: 'csv', rows: 100_000, defectRate: 0.01, seed: 3 })
  const created = await app.inject({
    method: 'POST',
    url: '/api/v1/uploads',
    payload: { size_bytes: file.length, filename: 'users.csv' },
  })
  t.equal(created.statusCode, 201, created.body)
  const upload = created.json<Upload>()
  t.equal(upload.status, 'pending')
  t.equal(upload.url, null)
  t.equal(upload.part_size_bytes, 5 * 1024 * 1024)
  t.equal(upload.parts.length, Math.ceil(file.length / (5 * 1024 * 1024)))
  t.ok(upload.parts.length >= 3, `${upload.parts.length} parts`)

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
  t.equal(completed.statusCode, 200, completed.body)
  t.match(completed.json<Upload>(), { status: 'completed', size_bytes: file.length, parts: [] })

  const started = await app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    payload: { resource: 'users', upload_id: upload.id },
  })
  t.equal(started.statusCode, 202, started.body)
  const job = await waitForImport(app, started.json<ImportJob>().id)
  t.equal(job.status, 'completed')
  t.equal(job.counters.processed, 100_000)
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

t.test('an s3:// import reads an object of an allowed bucket where it is', async (t) => {
  const app = await s3App(t, 'sources/', { S3_IMPORT_BUCKETS: SOURCES })
  await s3.send(new PutObjectCommand({ Bucket: SOURCES, Key: 'daily/users.csv', Body: usersCsv(500) }))
  const started = await app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    payload: { resource: 'users', url: `s3://${SOURCES}/daily/users.csv` },
  })
  t.equal(started.statusCode, 202, started.body)
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
  await t.rejects(buildTestApp(t, { environment: s3Environment('x/') }), {
    message:
      /^STORAGE=s3: the service cannot write, read and delete objects under s3:\/\/bulk-io\/x\/ at http:\/\/127\.0\.0\.1:\d+: access denied/,
  })
  process.env.AWS_SECRET_ACCESS_KEY = server.secretAccessKey
  await t.rejects(buildTestApp(t, { environment: { ...s3Environment('x/'), S3_BUCKET: 'no-such-bucket' } }), {
    message: /the bucket does not exist/,
  })
})

t.test(
  'the store goes away mid-import and mid-export: clear problems, and the jobs resume when it is back',
  async (t) => {
    const file = await generated({ resource: 'users', format: 'csv', rows: 200_000, defectRate: 0.02, seed: 11 })
    const reference = await buildTestApp(t, { environment: { BATCH_SIZE: '2000' } })
    reference.jobs.start()
    const referenceJob = await importAndWait(reference, { resource: 'users', file, filename: 'users.csv' })

    const app = await s3App(t, 'away/', { BATCH_SIZE: '2000' })
    const { id } = await startImport(app, 'users', file, 'users.csv')
    await until(async () => {
      const job = (await app.inject({ url: `/api/v1/imports/${id}` })).json<ImportJob>()
      return job.counters.processed >= 20_000 ? job : undefined
    }, 'the import under way')
    await server.halt()
    try {
      const ready = await until(async () => {
        const response = await app.inject({ url: '/ready' })
        return response.statusCode === 503 ? response : undefined
      }, '/ready to see the store away')
      t.match(ready.json(), { code: 'store_unavailable', reason: 'store_down' })
      const refused = await app.inject({
        method: 'POST',
        url: '/api/v1/exports',
        payload: { resource: 'users', format: 'csv' },
      })
      t.equal(refused.statusCode, 202, 'an export is queued while the store is away')
      const exportId = refused.json<ExportJob>().id
      const upload = await app.inject({
        method: 'POST',
        url: '/api/v1/imports',
        payload: { resource: 'users', url: 'https://example.com/users.csv' },
      })
      t.not(upload.statusCode, 500, 'no 500 while the store is away')
      // Given time to fail, neither job does: they wait for the store.
      await new Promise((resolve) => setTimeout(resolve, 8000))
      const waiting = (await app.inject({ url: `/api/v1/imports/${id}` })).json<ImportJob>()
      t.not(waiting.status, 'failed', `the import waits (${waiting.status}, ${JSON.stringify(waiting.error)})`)
      t.ok(waiting.counters.processed < 200_000, 'it stopped where the store went away')
      const exportWaiting = (await app.inject({ url: `/api/v1/exports/${exportId}` })).json<ExportJob>()
      t.not(exportWaiting.status, 'failed', `the export waits (${exportWaiting.status})`)
      await server.resume()
      const job = await waitForImport(app, id)
      t.equal(job.status, 'completed', JSON.stringify(job.error))
      t.same(job.counters, referenceJob.counters, 'the counters of an uninterrupted run')
      t.same(await usersDigest(app), await usersDigest(reference), 'the rows of an uninterrupted run')
      const exported = await waitForExport(app, exportId)
      t.equal(exported.status, 'completed')
      const download = await app.inject({ url: `/api/v1/exports/${exportId}/download` })
      t.equal(download.statusCode, 200)
      t.equal(Number(download.headers['content-length']), exported.counters.bytes)
      t.equal((await app.inject({ url: '/ready' })).statusCode, 200, 'ready again')
    } finally {
      await server.resume().catch(() => {})
    }
  },
)
