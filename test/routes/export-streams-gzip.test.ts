import { request as httpRequest, type IncomingMessage } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { gunzipSync } from 'node:zlib'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { buildTestApp } from '../helper.ts'

// Issue 8, finding 11: gzip streams of many chunks stalled a few KB before their end, about one
// request in ten, and kept their stream slot for ever. 50 rows never showed it; 10,000 did.

const ROWS = 10_000
const REPETITIONS = 24

/** `noise`: each name gets 192 random hex digits, so that the gzip stream stays large (~100 bytes a row). */
async function seedUsers(app: FastifyInstance, count: number, noise = false): Promise<void> {
  const name = noise
    ? app.sql`'User ' || g || ' ' || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text)`
    : app.sql`'User ' || g`
  await app.sql`
    insert into users (email, name, role, active)
    select 'user' || g || '@example.com', ${name}, 'reader', g % 2 = 0
    from generate_series(1, ${count}) g`
}

interface Download {
  status: number
  encoding: string | undefined
  body: Buffer
}

/**
 * GET on a real port, read by a client that takes `pauseMs` after every `pauseEvery` chunks
 * (0: as fast as it can). Rejects when the whole body has not arrived within `timeoutMs`.
 */
function download(
  url: string,
  { pauseEvery = 0, pauseMs = 0, timeoutMs = 15_000 }: { pauseEvery?: number; pauseMs?: number; timeoutMs?: number },
): Promise<Download> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let received = 0
    const request = httpRequest(url, { headers: { 'accept-encoding': 'gzip' } }, (response) => {
      let count = 0
      response.on('data', (chunk: Buffer) => {
        chunks.push(chunk)
        received += chunk.length
        if (pauseEvery > 0 && ++count % pauseEvery === 0) {
          response.pause()
          setTimeout(() => response.resume(), pauseMs)
        }
      })
      response.on('end', () => {
        clearTimeout(timer)
        resolve({
          status: response.statusCode ?? 0,
          encoding: response.headers['content-encoding'],
          body: Buffer.concat(chunks),
        })
      })
      response.on('error', (error) => {
        clearTimeout(timer)
        reject(error)
      })
    })
    const timer = setTimeout(() => {
      request.destroy()
      reject(new Error(`stalled: ${received} bytes received, no end within ${timeoutMs} ms`))
    }, timeoutMs)
    request.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    request.end()
  })
}

async function streamsInProgress(app: FastifyInstance): Promise<string> {
  const metrics = (await app.inject({ url: '/metrics' })).body
  return metrics.match(/bulkio_export_streams_in_progress\{resource="users"\} (\d+)/)?.[1] ?? 'absent'
}

t.test(`gzip streams of ${ROWS} users end every time, read fast or slowly`, async (t) => {
  const app = await buildTestApp(t, { environment: { EXPORT_MAX_STREAMS: '2' } })
  await seedUsers(app, ROWS)
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const plain = (await app.inject({ url: '/api/v1/exports/users/stream?format=ndjson' })).body
  t.equal(plain.trimEnd().split('\n').length, ROWS)

  const readers = {
    fast: {},
    slow: { pauseEvery: 4, pauseMs: 5 },
  }
  for (const [name, reader] of Object.entries(readers)) {
    const failures: string[] = []
    for (let attempt = 1; attempt <= REPETITIONS; attempt++) {
      const outcome = await download(`${address}/api/v1/exports/users/stream?format=ndjson`, reader).catch(
        (error: Error) => error,
      )
      if (outcome instanceof Error) {
        failures.push(`attempt ${attempt}: ${outcome.message}`)
        continue
      }
      if (outcome.status !== 200) failures.push(`attempt ${attempt}: status ${outcome.status}`)
      else if (outcome.encoding !== 'gzip' || gunzipSync(outcome.body).toString() !== plain)
        failures.push(`attempt ${attempt}: the ${outcome.encoding} body differs from the plain export`)
    }
    t.same(failures, [], `${name} reader: ${REPETITIONS} complete gzip streams`)
  }
  let inProgress = await streamsInProgress(app)
  for (let attempt = 0; attempt < 50 && inProgress !== '0'; attempt++) {
    await sleep(50)
    inProgress = await streamsInProgress(app)
  }
  t.equal(inProgress, '0', 'every stream gave its slot back')
})

t.test('a gzip client that stops reading, then goes away, gives back its slot and connection', async (t) => {
  const app = await buildTestApp(t, { environment: { EXPORT_MAX_STREAMS: '1' } })
  // The stream must outgrow every buffer between the paused client and the export (the kernel's
  // socket buffers take megabytes): a well-compressed one fits in them whole on a quiet machine,
  // and ends before the check.
  await seedUsers(app, 100_000, true)
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  for (let round = 0; round < 3; round++) {
    const request = httpRequest(`${address}/api/v1/exports/users/stream?format=ndjson`, {
      headers: { 'accept-encoding': 'gzip' },
    })
    const response = await new Promise<IncomingMessage>((resolve, reject) =>
      request.on('response', resolve).on('error', reject).end(),
    )
    t.equal(response.statusCode, 200)
    await new Promise((resolve) => response.once('data', resolve))
    response.pause() // reads no more: every buffer on the way fills, then the export waits
    await sleep(300)
    t.equal(await streamsInProgress(app), '1', `round ${round + 1}: the stalled stream holds the only slot`)
    request.destroy()
    let inProgress = await streamsInProgress(app)
    for (let attempt = 0; attempt < 50 && inProgress !== '0'; attempt++) {
      await sleep(50)
      inProgress = await streamsInProgress(app)
    }
    t.equal(inProgress, '0', `round ${round + 1}: the slot is free once the client is gone`)
  }
  const [busy] = await app.sql<{ count: number }[]>`
    select count(*)::int as count from pg_stat_activity
    where application_name = 'bulk-io export' and state <> 'idle' and datname = current_database()`
  t.equal(busy?.count, 0, 'no export backend is left busy')
  const next = await download(`${address}/api/v1/exports/users/stream?format=ndjson&role=admin`, {})
  t.equal(next.status, 200, 'a new stream is served')
})
