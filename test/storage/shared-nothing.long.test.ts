import { createWriteStream } from 'node:fs'
import { mkdir, readdir } from 'node:fs/promises'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import { CreateBucketCommand } from '@aws-sdk/client-s3'
import t from 'tap'
import { generate } from '../../bench/generate.ts'
import { createTestDatabase } from '../db.ts'
import {
  importOutcome,
  listeningAddress,
  processImportJob,
  scratchDirectory,
  startServerProcess,
  until,
  uploadUsersFile,
} from '../helper.ts'
import { type S3Server, s3ClientOf, startS3Server } from '../setup/s3-server.ts'

// Instances that share nothing but the database and the bucket (STORAGE=s3), each with a
// directory of its own: an API-only instance takes the upload, another runs the job and is
// killed (kill -9) mid-import, a third takes the job over and resumes it from its checkpoint with
// a ranged read; the tables end as after an uninterrupted run. An export made by the third
// downloads through the first, passed through and redirected to the store, with Range.

const ROWS = 200_000
const BUCKET = 'shared-nothing'

let server: S3Server
t.before(async () => {
  server = await startS3Server()
  const s3 = s3ClientOf(server)
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }))
  s3.destroy()
})
t.teardown(() => server?.stop())

async function instance(
  t: Parameters<typeof startServerProcess>[0],
  databaseUrl: string,
  environment: Record<string, string>,
) {
  const directory = scratchDirectory('bulk-io-instance-')
  await mkdir(directory, { recursive: true })
  const process_ = startServerProcess(t, {
    DATABASE_URL: databaseUrl,
    IMPORT_DIR: path.join(directory, 'imports'),
    EXPORT_DIR: path.join(directory, 'exports'),
    STORAGE: 's3',
    S3_ENDPOINT: server.endpoint,
    S3_REGION: server.region,
    S3_BUCKET: BUCKET,
    S3_PREFIX: 'shared/',
    S3_FORCE_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    BATCH_SIZE: '2000',
    JOB_LEASE_SECONDS: '2',
    JOB_POLL_INTERVAL_MS: '200',
    LOG_LEVEL: 'info',
    ...environment,
  })
  const address = await listeningAddress(process_)
  await process_.waitForLog((line) => line.msg === 'ready')
  return { server: process_, address, directory }
}

/** Every file under a directory (none: the instance kept nothing on its disk). */
async function files(directory: string): Promise<string[]> {
  const entries = await readdir(directory, { recursive: true, withFileTypes: true })
  return entries.filter((entry) => entry.isFile()).map((entry) => path.join(entry.parentPath, entry.name))
}

t.test(
  'an API-only instance, a job runner killed mid-import, a third that resumes it with a ranged read',
  async (t) => {
    const file = path.join(scratchDirectory(), 'users.csv')
    await pipeline(
      generate({ resource: 'users', format: 'csv', rows: ROWS, defectRate: 0.02, seed: 5 }),
      createWriteStream(file),
    )

    // The reference: the same file, uninterrupted, on one instance of a database of its own.
    const referenceUrl = await createTestDatabase(t)
    const reference = await instance(t, referenceUrl, {})
    const referenceId = await uploadUsersFile(reference.address, file)
    await until(
      async () => ((await processImportJob(reference.address, referenceId)).done ? true : undefined),
      'the reference import',
      120_000,
    )
    reference.server.child.kill('SIGTERM')
    await reference.server.exited

    const databaseUrl = await createTestDatabase(t)
    const api = await instance(t, databaseUrl, { RUN_JOBS: 'false' })
    const runner = await instance(t, databaseUrl, {})
    const id = await uploadUsersFile(api.address, file)
    await runner.server.waitForLog((line) => line.msg === 'import started' && line.job_id === id)
    const before = await until(
      async () => {
        const state = await processImportJob(api.address, id)
        return state.counters.processed >= ROWS / 4 ? state : undefined
      },
      'a quarter of the records',
      120_000,
    )
    runner.server.child.kill('SIGKILL')
    await runner.server.exited
    t.ok(before.counters.processed < ROWS, `killed mid-way, at ${before.counters.processed} records`)
    t.notOk(
      api.server.logs.some((line) => line.msg === 'import started'),
      'the API-only instance ran no job',
    )

    const successor = await instance(t, databaseUrl, {})
    const resumed = await successor.server.waitForLog(
      (line) =>
        line.msg === 'import resumes at its checkpoint: the source is read from its byte on' && line.job_id === id,
      60_000,
    )
    t.ok((resumed.from_byte as number) > 0, `a ranged read from byte ${resumed.from_byte}`)
    t.ok((resumed.checkpoint_record as number) >= before.counters.processed, 'after its last committed batch')
    t.match(resumed.source, /^s3:\/\/shared-nothing\/shared\/imports\//)
    await until(
      async () => ((await processImportJob(api.address, id)).done ? true : undefined),
      'the resumed import',
      120_000,
    )
    const expected = await importOutcome(referenceUrl, referenceId)
    const actual = await importOutcome(databaseUrl, id)
    t.same(actual, expected, 'same counters, rows and errors as the uninterrupted run')
    t.equal(actual?.processed, String(ROWS))

    // An export asked of the API instance, run by the successor, downloaded through the API instance.
    const created = await fetch(`${api.address}/api/v1/exports`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ resource: 'users', format: 'csv' }),
    })
    const exportId = ((await created.json()) as { id: string }).id
    const exported = await until(
      async () => {
        const state = (await (await fetch(`${api.address}/api/v1/exports/${exportId}`)).json()) as {
          done: boolean
          status: string
          counters: { rows: number; bytes: number }
        }
        return state.done ? state : undefined
      },
      'the export',
      120_000,
    )
    t.equal(exported.status, 'completed')
    t.ok(
      successor.server.logs.some((line) => line.msg === 'export finished' && line.job_id === exportId),
      'run by the successor',
    )
    const whole = await fetch(`${api.address}/api/v1/exports/${exportId}/download`)
    t.equal(whole.status, 200)
    const bytes = Buffer.from(await whole.arrayBuffer())
    t.equal(bytes.length, exported.counters.bytes)
    t.equal(bytes.toString().trimEnd().split('\n').length, Number(actual?.users) + 1, 'a header and every row')
    const ranged = await fetch(`${api.address}/api/v1/exports/${exportId}/download`, {
      headers: { range: 'bytes=1000-1999' },
    })
    t.equal(ranged.status, 206)
    t.same(Buffer.from(await ranged.arrayBuffer()), bytes.subarray(1000, 2000), 'a range, passed through')

    const redirecting = await instance(t, databaseUrl, { RUN_JOBS: 'false', EXPORT_DOWNLOAD_REDIRECT: 'true' })
    const redirect = await fetch(`${redirecting.address}/api/v1/exports/${exportId}/download`, { redirect: 'manual' })
    t.equal(redirect.status, 302)
    const fromStore = await fetch(redirect.headers.get('location') as string, { headers: { range: 'bytes=1000-1999' } })
    t.equal(fromStore.status, 206)
    t.same(Buffer.from(await fromStore.arrayBuffer()), bytes.subarray(1000, 2000), 'a range, from the store')

    for (const { directory } of [api, runner, successor, redirecting]) {
      t.same(await files(directory), [], `${path.basename(directory)}: nothing on the instance's own disk`)
    }
  },
)
