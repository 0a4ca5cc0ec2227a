import { request as httpRequest, type IncomingMessage } from 'node:http'
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { problemTypeUri } from '../../schemas/problem.ts'
import { createTestDatabase } from '../db.ts'
import { listeningAddress, type ServerProcess, scratchDirectory, startServerProcess } from '../helper.ts'

// Issue 8: streams against the service as a real process, with faults of the database. Finding 1:
// a failure before the first row raised an error on a stream nothing listened to, and the process
// stopped. The fault test: every database connection terminated while a stream runs.

function fileDirectories() {
  const scratch = scratchDirectory()
  return { IMPORT_DIR: path.join(scratch, 'imports'), EXPORT_DIR: path.join(scratch, 'exports') }
}

/**
 * A server process on a database of its own with `rows` users; with `proxied`, it reaches
 * PostgreSQL through a proxy that the test can take down.
 */
async function startService(t: Test, rows: number, { proxied = false } = {}) {
  const url = await createTestDatabase(t)
  const admin = postgres(url, { max: 1, onnotice: () => {} })
  t.teardown(() => admin.end())
  await admin`
    insert into users (email, name, role, active)
    select 'user' || g || '@example.com', 'User ' || g, 'reader', true from generate_series(1, ${rows}) g`
  const proxy = proxied ? await databaseProxy(t, url) : undefined
  const server = startServerProcess(t, { DATABASE_URL: proxy?.url ?? url, ...fileDirectories() })
  const address = await listeningAddress(server)
  await server.waitForLog((line) => line.msg === 'ready')
  return { server, address, admin, proxy, database: new URL(url).pathname.slice(1) }
}

/** GET on a real port; resolves as soon as the headers arrive. */
function getStream(url: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    httpRequest(url, resolve).on('error', reject).end()
  })
}

/** Reads a response to its end: 'complete', or 'cut short' when it ends without its final chunk. */
function readToEnd(response: IncomingMessage, pauseMs = 0): Promise<{ bytes: number; ending: string }> {
  return new Promise((resolve) => {
    let bytes = 0
    response.on('data', (chunk: Buffer) => {
      bytes += chunk.length
      if (pauseMs > 0) {
        response.pause()
        setTimeout(() => response.resume(), pauseMs)
      }
    })
    response.on('end', () => resolve({ bytes, ending: response.complete ? 'complete' : 'cut short' }))
    response.on('error', () => resolve({ bytes, ending: 'cut short' }))
    response.on('close', () => resolve({ bytes, ending: response.complete ? 'complete' : 'cut short' }))
  })
}

async function assertAlive(t: Test, server: ServerProcess, address: string): Promise<void> {
  await sleep(200) // a crash on what just happened would come now
  const uncaught = server.logs.find((line) => String(line.msg).includes('uncaught'))
  if (uncaught || server.child.exitCode !== null) {
    t.fail(`the process stops: ${JSON.stringify(uncaught ?? server.logs.slice(-3))} ${server.stderr()}`)
    return
  }
  let ready = 0
  for (let attempt = 0; attempt < 50 && ready !== 200; attempt++) {
    ready = (await fetch(`${address}/ready`)).status
    if (ready !== 200) await sleep(100)
  }
  t.equal(ready, 200, '/ready answers 200')
  t.equal(server.child.exitCode, null, 'the process is still running')
}

async function streamedRows(address: string): Promise<number> {
  const response = await fetch(`${address}/api/v1/exports/users/stream?fields=id`)
  return (await response.text()).trimEnd().split('\n').length
}

t.test('a filter value PostgreSQL cannot hold is a 400; the process keeps serving', async (t) => {
  const { server, address } = await startService(t, 10)
  const response = await fetch(`${address}/api/v1/exports/users/stream?updated_before=0000-01-01T00:00:00Z`)
  t.equal(response.status, 400)
  t.match(await response.json(), { code: 'validation_failed' })
  await assertAlive(t, server, address)
})

t.test('a database error before the first row is a 500 problem, logged; the process lives on', async (t) => {
  const { server, address, admin } = await startService(t, 10)
  await admin`alter table users rename to users_elsewhere`
  const response = await fetch(`${address}/api/v1/exports/users/stream?format=csv`)
  t.equal(response.status, 500)
  t.equal(response.headers.get('content-type'), 'application/problem+json; charset=utf-8')
  const requestId = response.headers.get('x-request-id')
  t.same(await response.json(), {
    type: problemTypeUri('internal_error'),
    title: 'Internal server error',
    status: 500,
    detail: 'An unexpected error occurred. Quote the instance (request id) when reporting it.',
    instance: requestId,
    code: 'internal_error',
  })
  const logged = await server.waitForLog((line) => line.reqId === requestId && line.level === 50, 5000)
  t.match(logged, { err: { code: '42P01' } }, 'the log line has the cause')
  await assertAlive(t, server, address)
  await admin`alter table users_elsewhere rename to users`
  t.equal(await streamedRows(address), 10, 'the next stream works')
  const metrics = await (await fetch(`${address}/metrics`)).text()
  t.match(metrics, /bulkio_export_streams_in_progress\{resource="users"\} 0\n/, 'the slot was given back')
})

/** A TCP proxy to PostgreSQL that can go down (closing every connection) and come back. */
async function databaseProxy(t: Test, target: string) {
  const { hostname, port } = new URL(target)
  const sockets = new Set<Socket>()
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(Number(port), hostname)
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('error', () => {})
      socket.on('close', () => {
        sockets.delete(socket)
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream).pipe(client)
  })
  const listen = (listenPort: number) =>
    new Promise<number>((resolve) =>
      server.listen(listenPort, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
    )
  const proxyPort = await listen(0)
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    server.close()
  })
  return {
    url: Object.assign(new URL(target), { host: `127.0.0.1:${proxyPort}` }).toString(),
    async down() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const socket of sockets) socket.destroy()
      })
    },
    async up() {
      await listen(proxyPort)
    },
  }
}

t.test('the database unreachable before the first row: 503 database_unavailable; then it recovers', async (t) => {
  const { server, address, proxy } = await startService(t, 10, { proxied: true })
  if (!proxy) throw new Error('no proxy')
  await proxy.down()
  const response = await fetch(`${address}/api/v1/exports/users/stream`).catch((error) => {
    throw new Error(
      `${error.cause?.message}; the service logged ${JSON.stringify(server.logs.slice(-4))} ${server.stderr()}`,
    )
  })
  t.equal(response.status, 503)
  t.equal(response.headers.get('retry-after'), '5')
  t.match(await response.json(), { code: 'database_unavailable', status: 503 })
  t.equal(server.child.exitCode, null, 'the process is still running')
  await proxy.up()
  await assertAlive(t, server, address)
  t.equal(await streamedRows(address), 10, 'streams work again')
})

t.test('every database connection terminated during a stream: it is cut short, and the service recovers', async (t) => {
  const rows = 200_000
  const { server, address, admin, database } = await startService(t, rows)
  const response = await getStream(`${address}/api/v1/exports/users/stream?format=ndjson`)
  t.equal(response.statusCode, 200)
  const read = readToEnd(response, 2)
  await sleep(300) // the stream is running, held back by its slow reader
  const terminated = await admin<{ terminated: boolean }[]>`
    select pg_terminate_backend(pid) as terminated from pg_stat_activity
    where datname = ${database} and pid <> pg_backend_pid()`
  t.ok(terminated.length >= 2, `${terminated.length} backends terminated (the stream's among them)`)
  const { bytes, ending } = await read
  t.equal(ending, 'cut short', `the response ends without its final chunk (${bytes} bytes read)`)
  await assertAlive(t, server, address)
  t.equal(await streamedRows(address), rows, 'a new stream sends every row')
  const metrics = await (await fetch(`${address}/metrics`)).text()
  t.match(metrics, /bulkio_export_streams_in_progress\{resource="users"\} 0\n/, 'every slot was given back')
})
