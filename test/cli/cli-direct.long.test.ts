import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { createClient, dataOf, type ImportJob } from '../../client/index.ts'
import { buildTestApp, generated, scratchDirectory, until } from '../helper.ts'
import { type S3Proxy, startS3Proxy } from '../setup/s3-proxy.ts'
import { type S3Server, s3ClientOf, startS3Server } from '../setup/s3-server.ts'
import { listen, runCli, startCli } from './run-cli.ts'

// The CLI's direct uploads (client/cli/import.ts): a file above --direct-threshold goes straight
// into the bucket of a service with STORAGE=s3 (test/setup/s3-server.ts: OpenStack Swift), in
// parts PUT to presigned URLs, and the import names the upload; a part cut off is sent again,
// Ctrl-C aborts the upload; a service with STORAGE=fs gets the file through its multipart form.

const BUCKET = 'bulk-io-cli'
const PART_BYTES = 5 * 1024 * 1024
let server: S3Server
let s3: S3Client

t.before(async () => {
  server = await startS3Server()
  // The service takes its credentials from the AWS chain: the environment (its threads too).
  process.env.AWS_ACCESS_KEY_ID = server.accessKeyId
  process.env.AWS_SECRET_ACCESS_KEY = server.secretAccessKey
  s3 = s3ClientOf(server)
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }))
})
t.teardown(async () => {
  s3?.destroy()
  delete process.env.AWS_ACCESS_KEY_ID
  delete process.env.AWS_SECRET_ACCESS_KEY
  await server?.stop()
})

/** A service with STORAGE=s3 (small parts), listening; its S3 endpoint the server or a proxy of it. */
async function s3Service(t: Test, prefix: string, options: { endpoint?: string; runJobs?: boolean } = {}) {
  const app = await buildTestApp(t, {
    environment: {
      STORAGE: 's3',
      S3_ENDPOINT: options.endpoint ?? server.endpoint,
      S3_REGION: server.region,
      S3_BUCKET: BUCKET,
      S3_PREFIX: prefix,
      S3_FORCE_PATH_STYLE: 'true',
      S3_PART_BYTES: String(PART_BYTES),
      JOB_POLL_INTERVAL_MS: '100',
    },
  })
  if (options.runJobs !== false) app.jobs.start()
  return { app, url: await listen(app) }
}

async function storeWrites(app: FastifyInstance): Promise<number> {
  const metrics = (await app.inject({ url: '/metrics' })).body
  const line = /^bulkio_store_bytes_total\{[^}]*operation="write"[^}]*\} (\d+)/m.exec(metrics)
  return Number(line?.[1] ?? Number.NaN)
}

async function keys(prefix: string): Promise<string[]> {
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }))
  return (listed.Contents ?? []).map((object) => object.Key as string)
}

const scratch = scratchDirectory('bulk-io-cli-direct-')
// 100,000 users (1% of them bad), about 13 MB: three parts of 5 MiB.
const content = await generated({ resource: 'users', format: 'csv', rows: 100_000, defectRate: 0.01, seed: 5 })
const file = path.join(scratch, 'users.csv')
writeFileSync(file, content)
const parts = Math.ceil(content.length / PART_BYTES)
const sha256 = (bytes: Buffer | Uint8Array) => createHash('sha256').update(bytes).digest('hex')
let directCounters: ImportJob['counters'] | undefined

t.test('a file above --direct-threshold goes straight to the bucket, in parts; the import names it', async (t) => {
  const { app, url } = await s3Service(t, 'direct/')
  const writesBefore = await storeWrites(app)
  const result = await runCli(
    ['import', file, '-r', 'users', '--direct-threshold', '1MiB', '--progress-interval', '0.2'],
    {
      API_URL: url,
    },
  )
  t.equal(result.code, 3, result.stderr)
  t.match(
    result.stdout,
    /import [0-9a-f-]{36} completed in \d+s: 100,000 records: [\d,]+ inserted, 0 updated, [\d,]+ failed/,
  )
  const uploadId = new RegExp(
    `^direct upload ([0-9a-f-]{36}): 1[0-9.]+ MB to the object store in ${parts} parts of 5\\.24 MB$`,
    'm',
  ).exec(result.stderr)?.[1]
  t.ok(uploadId, 'stderr names the direct upload and its parts')
  t.match(result.stderr, /^users\.csv: uploading [\d.]+%, .* of 1[\d.]+ MB/m, 'its progress')
  t.match(result.stderr, /^users\.csv: completed 100\.0%, 100,000 records, [\d,]+ failed$/m)

  const client = createClient({ baseUrl: url })
  const upload = dataOf(await client.GET('/api/v1/uploads/{id}', { params: { path: { id: uploadId as string } } }))
  t.match(upload, { status: 'completed', size_bytes: content.length, filename: 'users.csv' })
  const [row] = await app.sql<{ job: string; object_key: string }[]>`
    select j.id as job, u.object_key from uploads u join import_jobs j on j.source_path = u.object_key
    where u.id = ${uploadId as string}`
  t.ok(row, 'the import job reads the upload')
  const job = dataOf(await client.GET('/api/v1/imports/{id}', { params: { path: { id: row?.job as string } } }))
  t.match(job, { status: 'completed', source: { type: 'upload', size_bytes: content.length } })
  t.equal(job.counters.processed, 100_000)
  t.ok(job.counters.failed > 0 && job.counters.inserted + job.counters.failed === 100_000, JSON.stringify(job.counters))
  const [users] = await app.sql<{ count: number }[]>`select count(*)::int as count from users`
  t.equal(users?.count, job.counters.inserted, 'every inserted row is there')
  t.ok(
    (await storeWrites(app)) - writesBefore < content.length / 100,
    'the file did not go through the service (it wrote next to nothing to the store)',
  )
  directCounters = job.counters
})

t.test('STORAGE=fs: no direct uploads; the CLI says so and uploads through the service', async (t) => {
  const app = await buildTestApp(t)
  app.jobs.start()
  const url = await listen(app)
  const result = await runCli(['import', file, '-r', 'users', '--direct-threshold', '1000000', '--json'], {
    API_URL: url,
  })
  t.equal(result.code, 3, result.stderr)
  t.match(
    result.stderr,
    /^no direct upload: the service keeps its files on disk \(STORAGE=fs\); users\.csv goes through the service$/m,
  )
  const job = JSON.parse(result.stdout) as ImportJob
  t.match(job, { status: 'completed', source: { type: 'upload', filename: 'users.csv', size_bytes: content.length } })
  t.equal(job.source.sha256, sha256(content), 'the service hashed the file as it received it')
  if (directCounters) t.same(job.counters, directCounters, 'the counters of the direct upload')
  const [uploads] = await app.sql<{ count: number }[]>`select count(*)::int as count from uploads`
  t.equal(uploads?.count, 0, 'no upload was made')

  const small = await runCli(['import', file, '-r', 'users', '--detach', '--quiet'], { API_URL: url })
  t.equal(small.code, 0, small.stderr)
  t.equal(small.stderr, '', 'under the default threshold (100 MiB): the form upload, nothing said')
})

t.test('a part cut off is PUT again: the object in the bucket is the file', async (t) => {
  const proxy = await startS3Proxy(server.endpoint, { cutAfterBytes: 1024 * 1024, cuts: 2 })
  t.teardown(() => proxy.close())
  const { url } = await s3Service(t, 'retry/', { endpoint: proxy.endpoint, runJobs: false })
  const result = await runCli(['import', file, '-r', 'users', '--direct', '--detach', '--json'], { API_URL: url })
  t.equal(result.code, 0, result.stderr)
  t.equal(proxy.cut(), 2, 'two PUTs were cut')
  const retries = result.stderr.match(/^part \d+: the PUT failed: .*; trying it again in \ds \(try 2 of 4\)$/gm) ?? []
  t.equal(retries.length, 2, `each said on stderr:\n${result.stderr}`)
  const job = JSON.parse(result.stdout) as ImportJob
  t.match(job, { status: 'queued', source: { type: 'upload', size_bytes: content.length } })
  const [key] = await keys('retry/imports/')
  t.ok(key?.endsWith('.direct'), `the direct upload's object (${key})`)
  const object = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))
  t.equal(
    sha256(await (object.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray()),
    sha256(content),
    'byte for byte',
  )
})

t.test('Ctrl-C during a direct upload aborts it: no job, nothing left in the bucket', async (t) => {
  // A slow network: 1 MB/s a connection, so the upload takes a few seconds.
  const proxy: S3Proxy = await startS3Proxy(server.endpoint, { bytesPerSecond: 1_000_000 })
  t.teardown(() => proxy.close())
  const { app, url } = await s3Service(t, 'interrupt/', { endpoint: proxy.endpoint })
  const run = startCli(['import', file, '-r', 'users', '--direct', '--progress-interval', '0.2'], { API_URL: url })
  const uploadId = await until(
    async () => /^direct upload ([0-9a-f-]{36})/m.exec(run.output().stderr)?.[1],
    'the direct upload to start',
  )
  const before = proxy.upstreamBytes()
  await until(async () => (proxy.upstreamBytes() > before + 1_000_000 ? true : undefined), 'parts under way')
  run.child.kill('SIGINT')
  const result = await run.result
  t.equal(result.code, 130, result.stderr)
  t.match(result.stderr, `interrupted: the direct upload ${uploadId} was aborted, no job was created`)
  const client = createClient({ baseUrl: url })
  const upload = dataOf(await client.GET('/api/v1/uploads/{id}', { params: { path: { id: uploadId } } }))
  t.equal(upload.status, 'aborted')
  const [jobs] = await app.sql<{ count: number }[]>`select count(*)::int as count from import_jobs`
  t.equal(jobs?.count, 0, 'no job')
  t.same(await keys('interrupt/imports/'), [], 'nothing in the bucket')
})

t.test('usage: --direct and --no-direct together, a threshold that is no size', async (t) => {
  const both = await runCli(['import', file, '-r', 'users', '--direct', '--no-direct'])
  t.equal(both.code, 2)
  t.match(both.stderr, '--direct or --no-direct, not both')
  const bad = await runCli(['import', file, '-r', 'users', '--direct-threshold', 'lots'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, '--direct-threshold is a size in bytes')
})
