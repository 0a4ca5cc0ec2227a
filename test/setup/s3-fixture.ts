import { CreateBucketCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3'
import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import type { ExportJob } from '../../schemas/exports.ts'
import { buildTestApp, until } from '../helper.ts'
import { type S3Server, s3ClientOf, startS3Server } from './s3-server.ts'

// What the tests of STORAGE=s3 share: a Swift server (s3-server.ts) with the buckets they name,
// its credentials in the environment (the service reads the AWS chain, its threads too), a client
// of its own, and apps configured for it.

export interface S3Fixture {
  server: S3Server
  /** The test's own client of the server. */
  s3: S3Client
  bucket: string
  /** The service's settings for the bucket, under `prefix`. */
  environment(prefix: string, extra?: Record<string, string>): Record<string, string>
  /** An app with STORAGE=s3 under `prefix`, its jobs started. */
  app(t: Test, prefix: string, extra?: Record<string, string>, databaseUrl?: string): Promise<FastifyInstance>
  /** The keys of the bucket under `prefix`, sorted. */
  keys(prefix: string): Promise<string[]>
}

/** Starts the server before the file's tests (`buckets[0]` is the service's) and stops it after. */
export function s3Fixture(tap: Test, buckets: string[]): S3Fixture {
  const fixture = { bucket: buckets[0] as string } as S3Fixture
  tap.before(async () => {
    const server = await startS3Server()
    process.env.AWS_ACCESS_KEY_ID = server.accessKeyId
    process.env.AWS_SECRET_ACCESS_KEY = server.secretAccessKey
    const s3 = s3ClientOf(server, { maxAttempts: 10 })
    for (const bucket of buckets) await s3.send(new CreateBucketCommand({ Bucket: bucket }))
    Object.assign(fixture, { server, s3 })
  })
  tap.teardown(async () => {
    fixture.s3?.destroy()
    delete process.env.AWS_ACCESS_KEY_ID
    delete process.env.AWS_SECRET_ACCESS_KEY
    await fixture.server?.stop()
  })
  fixture.environment = (prefix, extra = {}) => ({
    STORAGE: 's3',
    S3_ENDPOINT: fixture.server.endpoint,
    S3_REGION: fixture.server.region,
    S3_BUCKET: fixture.bucket,
    S3_PREFIX: prefix,
    S3_FORCE_PATH_STYLE: 'true',
    JOB_POLL_INTERVAL_MS: '100',
    ...extra,
  })
  fixture.app = async (t, prefix, extra = {}, databaseUrl) => {
    const app = await buildTestApp(t, { environment: fixture.environment(prefix, extra), databaseUrl })
    app.jobs.start()
    return app
  }
  fixture.keys = async (prefix) => {
    const listed = await fixture.s3.send(new ListObjectsV2Command({ Bucket: fixture.bucket, Prefix: prefix }))
    return (listed.Contents ?? []).map((object) => object.Key as string).sort()
  }
  return fixture
}

/** A digest of the users table, by natural key (rows without an id in the file get a random one). */
export async function usersDigest(app: FastifyInstance) {
  const [row] = await app.sql<{ users: number; digest: string }[]>`
    select count(*)::int as users,
      md5(string_agg(concat_ws('|', email, name, role, active, created_at, updated_at), ',' order by lower(email))) as digest
    from users`
  return row
}

/** Polls an export job until it is done. */
export async function waitForExport(app: FastifyInstance, id: string): Promise<ExportJob> {
  return until(async () => {
    const job = (await app.inject({ url: `/api/v1/exports/${id}` })).json<ExportJob>()
    return job.done ? job : undefined
  }, `export ${id}`)
}

/** The key (s3) or path (fs) an import job names as its source. */
export async function importSource(app: FastifyInstance, id: string): Promise<string | undefined> {
  const [row] = await app.sql<{ source_path: string }[]>`select source_path from import_jobs where id = ${id}`
  return row?.source_path
}
