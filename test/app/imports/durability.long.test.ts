import { createWriteStream } from 'node:fs'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import postgres from 'postgres'
import t from 'tap'
import { generate } from '../../../bench/generate.ts'
import { createTestDatabase } from '../../db.ts'
import {
  importOutcome,
  listeningAddress,
  processImportJob,
  type ServerProcess,
  scratchDirectory,
  startServerProcess,
  uploadUsersFile,
} from '../../helper.ts'

// docs/contract.md §10 with real processes and kill -9: a job resumes after its last committed batch and ends
// with exactly the rows, counters and errors of an uninterrupted run; several processes on one
// database share the jobs, each job running in one process at a time.

const ROWS = 200_000

async function generatedFile(rows: number, defectRate: number): Promise<string> {
  const file = path.join(scratchDirectory(), 'users.csv')
  await pipeline(generate({ resource: 'users', format: 'csv', rows, defectRate, seed: 7 }), createWriteStream(file))
  return file
}

async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error('timed out')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function serve(
  t: Parameters<typeof startServerProcess>[0],
  databaseUrl: string,
  importDir: string,
  extra: Record<string, string> = {},
) {
  return startServerProcess(t, {
    DATABASE_URL: databaseUrl,
    IMPORT_DIR: importDir,
    EXPORT_DIR: path.join(importDir, '..', 'exports'),
    BATCH_SIZE: '2000',
    LOG_LEVEL: 'info',
    ...extra,
  })
}

t.test(
  `kill -9 during a ${ROWS}-row import, then a restart: the job completes exactly as an uninterrupted run`,
  async (t) => {
    const file = await generatedFile(ROWS, 0.02)
    const importDir = path.join(scratchDirectory(), 'imports')

    // The reference: the same file, uninterrupted, in a database of its own.
    const referenceUrl = await createTestDatabase(t)
    const reference = serve(t, referenceUrl, importDir)
    const referenceAddress = await listeningAddress(reference)
    await reference.waitForLog((line) => line.msg === 'ready')
    const referenceId = await uploadUsersFile(referenceAddress, file)
    await waitFor(async () => ((await processImportJob(referenceAddress, referenceId)).done ? true : undefined))
    reference.child.kill('SIGTERM')
    await reference.exited

    const databaseUrl = await createTestDatabase(t)
    const first = serve(t, databaseUrl, importDir)
    const address = await listeningAddress(first)
    await first.waitForLog((line) => line.msg === 'ready')
    const id = await uploadUsersFile(address, file)
    const before = await waitFor(async () => {
      const state = await processImportJob(address, id)
      return state.counters.processed >= ROWS / 4 ? state : undefined
    })
    first.child.kill('SIGKILL')
    await first.exited
    t.ok(before.counters.processed < ROWS, `killed mid-way, at ${before.counters.processed} records`)

    const second = serve(t, databaseUrl, importDir, { JOB_LEASE_SECONDS: '2' })
    const secondAddress = await listeningAddress(second)
    const resumed = await second.waitForLog((line) => line.msg === 'import started' && line.job_id === id, 60_000)
    t.ok((resumed.checkpoint_record as number) >= before.counters.processed, 'resumes after its last committed batch')
    await waitFor(async () => ((await processImportJob(secondAddress, id)).done ? true : undefined))

    const expected = await importOutcome(referenceUrl, referenceId)
    const actual = await importOutcome(databaseUrl, id)
    t.same(actual, expected, 'same counters, rows and errors as the uninterrupted run')
    t.equal(actual?.processed, String(ROWS))
  },
)

t.test('two processes share the jobs: each runs once; killing the owner hands its job to the other', async (t) => {
  const small = await generatedFile(20_000, 0.01)
  const large = await generatedFile(ROWS, 0.01)
  const importDir = path.join(scratchDirectory(), 'imports')
  const databaseUrl = await createTestDatabase(t)
  const environment = { JOB_LEASE_SECONDS: '2', JOB_POLL_INTERVAL_MS: '200', WORKER_POOL_SIZE: '2' }
  const processes: ServerProcess[] = [
    serve(t, databaseUrl, importDir, environment),
    serve(t, databaseUrl, importDir, environment),
  ]
  const addresses = (await Promise.all(processes.map(listeningAddress))) as [string, string]
  await Promise.all(processes.map((server) => server.waitForLog((line) => line.msg === 'ready')))
  t.teardown(() => {
    if (t.passing()) return
    // What each process did with the jobs, to tell a lost log line from a job run twice or failed.
    processes.forEach((server, index) => {
      const lines = server.logs.filter((line) => line.job_id !== undefined || (line.level as number) >= 40)
      t.comment(`process ${index}:\n${lines.map((line) => JSON.stringify(line)).join('\n')}`)
    })
  })

  const ids = await Promise.all(
    Array.from({ length: 6 }, (_, index) => uploadUsersFile(addresses[index % 2] as string, small)),
  )
  for (const id of ids)
    await waitFor(async () => ((await processImportJob(addresses[0] as string, id)).done ? true : undefined))
  // Two processes may claim two imports of users at once: the one that finds the resource's
  // write lock taken goes back to the queue unrun (deferred), and runs later. A job is done once
  // its row commits; its log line comes after, from its thread through the process's stdout (a
  // busy machine delays it by seconds): wait for every job's line, then for strays.
  const finishedLines = () =>
    processes.flatMap((server) => server.logs.filter((line) => line.msg === 'import finished'))
  await waitFor(async () =>
    ids.every((id) => finishedLines().some((line) => line.job_id === id)) ? true : undefined,
  ).catch(() => {})
  await new Promise((resolve) => setTimeout(resolve, 500))
  const finishes = finishedLines()
  t.same(
    finishes.map((line) => line.job_id).sort(),
    [...ids].sort(),
    'each job ran exactly once, in one of the processes',
  )
  t.ok(
    processes.every((server) => server.logs.some((line) => line.msg === 'import started')),
    'both processes took jobs',
  )

  const id = await uploadUsersFile(addresses[0] as string, large)
  const owner = await waitFor(async () =>
    processes.find((server) => server.logs.some((line) => line.msg === 'import started' && line.job_id === id)),
  )
  await waitFor(async () =>
    (await processImportJob(addresses[0] as string, id)).counters.processed >= 20_000 ? true : undefined,
  )
  owner.child.kill('SIGKILL')
  const survivor = processes.find((server) => server !== owner) as ServerProcess
  const survivorAddress = addresses[processes.indexOf(survivor)] as string
  await survivor.waitForLog((line) => line.msg === 'import started' && line.job_id === id, 60_000)
  const finished = await waitFor(async () => {
    const state = await processImportJob(survivorAddress, id)
    return state.done ? state : undefined
  })
  t.equal(finished.status, 'completed')
  t.equal(finished.counters.processed, ROWS, 'every record counted exactly once')
  const { inserted, updated, failed, processed } = finished.counters
  t.equal(inserted + updated + failed, processed)
})

t.test('every database connection terminated, twice, during an import: it ends as an uninterrupted run', async (t) => {
  const file = await generatedFile(ROWS / 2, 0.02)
  const importDir = path.join(scratchDirectory(), 'imports')

  const referenceUrl = await createTestDatabase(t)
  const reference = serve(t, referenceUrl, importDir)
  const referenceAddress = await listeningAddress(reference)
  await reference.waitForLog((line) => line.msg === 'ready')
  const referenceId = await uploadUsersFile(referenceAddress, file)
  await waitFor(async () => ((await processImportJob(referenceAddress, referenceId)).done ? true : undefined))
  reference.child.kill('SIGTERM')
  await reference.exited

  const databaseUrl = await createTestDatabase(t)
  const server = serve(t, databaseUrl, importDir, { JOB_LEASE_SECONDS: '5', LOG_LEVEL: 'debug' })
  const address = await listeningAddress(server)
  await server.waitForLog((line) => line.msg === 'ready')
  const id = await uploadUsersFile(address, file)
  t.teardown(() => {
    if (t.passing()) return
    const jobLines = server.logs.filter((line) => line.job_id !== undefined || (line.level as number) >= 40)
    t.comment(
      jobLines
        .slice(-12)
        .map((line) => JSON.stringify(line))
        .join('\n'),
    )
  })
  const killer = postgres(databaseUrl, { max: 1, onnotice: () => {} })
  t.teardown(() => killer.end({ timeout: 1 }))
  for (const share of [0.2, 0.5]) {
    // A status request may meet the database still reconnecting (503): ask again.
    const processed = async () => (await processImportJob(address, id).catch(() => undefined))?.counters?.processed ?? 0
    await waitFor(async () => ((await processed()) >= (ROWS / 2) * share ? true : undefined))
    const [terminated] = await killer<{ count: number }[]>`
      select count(pg_terminate_backend(pid))::int as count from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid()`
    t.ok((terminated?.count ?? 0) >= 3, `terminated the service's ${terminated?.count} connections`)
  }
  const final = await waitFor(async () => {
    const state = await processImportJob(address, id).catch(() => undefined)
    return state?.done ? state : undefined
  })
  t.equal(final.status, 'completed')
  t.equal(server.child.exitCode, null, 'the process stays up')
  t.equal((await fetch(`${address}/ready`)).status, 200, '/ready recovers')
  t.same(
    await importOutcome(databaseUrl, id),
    await importOutcome(referenceUrl, referenceId),
    'same rows, counters and errors',
  )
  t.notOk(
    server.logs.some((line) => line.msg === 'import failed unexpectedly'),
    'no run ended on an unexpected error',
  )
})
