import { existsSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { drain } from '../../app/server.ts'
import { embeddedPostgresUrl, stopEmbeddedPostgres } from '../../db/embedded.ts'
import { createTestDatabase } from '../db.ts'
import { buildTestApp, listeningAddress, scratchDirectory, startServerProcess } from '../helper.ts'

// The service as a real process: `node app/server.ts`, signals, exit codes, real HTTP.

function fileDirectories() {
  const scratch = scratchDirectory()
  return { IMPORT_DIR: path.join(scratch, 'imports'), EXPORT_DIR: path.join(scratch, 'exports') }
}

t.test('HTTP_PORT=abc stops the process at once with exit code 1 and one line naming it', async (t) => {
  const server = startServerProcess(t, { HTTP_PORT: 'abc', ...fileDirectories() })
  const { code } = await server.exited
  t.equal(code, 1)
  t.equal(server.stderr(), 'invalid configuration: HTTP_PORT="abc" is not an integer from 0 to 65535\n')
  t.same(server.logs, [], 'nothing else is printed')
})

t.test('with DATABASE_URL: /ready answers 200, and SIGTERM drains and exits 0', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const server = startServerProcess(t, { DATABASE_URL: databaseUrl, ...fileDirectories() })
  const address = await listeningAddress(server)
  await server.waitForLog((line) => line.msg === 'ready')
  const ready = await fetch(`${address}/ready`)
  t.equal(ready.status, 200)
  t.same(await ready.json(), { status: 'ready' })

  server.child.kill('SIGTERM')
  const { code } = await server.exited
  t.equal(code, 0)
  const messages = server.logs.map((line) => line.msg)
  const draining = messages.indexOf('shutting down: /ready answers 503')
  t.ok(draining >= 0 && draining < messages.indexOf('shutdown complete'), 'drains, then completes')
  t.equal(server.stderr(), '')
})

t.test('without DATABASE_URL: starts the embedded PostgreSQL, serves, and stops it on SIGTERM', async (t) => {
  const directory = path.join(scratchDirectory(), 'postgres')
  t.teardown(() => stopEmbeddedPostgres(directory))
  const server = startServerProcess(t, { EMBEDDED_DATABASE_DIR: directory, ...fileDirectories() })
  const started = await server.waitForLog((line) =>
    /^embedded PostgreSQL started on 127\.0\.0\.1:\d+/.test(String(line.msg)),
  )
  t.match(started, { directory, port: Number })
  const address = await listeningAddress(server)
  await server.waitForLog((line) => line.msg === 'ready')
  const health = await (await fetch(`${address}/health`)).json()
  t.match(health, { status: 'ok', database: { status: 'up', mode: 'embedded', server_version: /^17\./ } })
  t.equal((await fetch(`${address}/ready`)).status, 200)

  server.child.kill('SIGTERM')
  t.equal((await server.exited).code, 0)
  t.equal(await embeddedPostgresUrl(directory), null, 'the embedded server is stopped')
  t.notOk(existsSync(path.join(directory, 'postmaster.pid')))
})

t.test('after a kill -9, the next start reuses the embedded PostgreSQL left running', async (t) => {
  const directory = path.join(scratchDirectory(), 'postgres')
  t.teardown(() => stopEmbeddedPostgres(directory))
  const first = startServerProcess(t, { EMBEDDED_DATABASE_DIR: directory, ...fileDirectories() })
  await first.waitForLog((line) => line.msg === 'ready')
  first.child.kill('SIGKILL')
  await first.exited
  const orphan = await embeddedPostgresUrl(directory)
  t.ok(orphan, 'PostgreSQL outlives a killed service')

  const second = startServerProcess(t, { EMBEDDED_DATABASE_DIR: directory, ...fileDirectories() })
  await second.waitForLog(
    (line) => String(line.msg).includes('was already running') && String(line.msg).includes('reusing it'),
  )
  const address = await listeningAddress(second)
  await second.waitForLog((line) => line.msg === 'ready')
  t.equal((await fetch(`${address}/ready`)).status, 200)
  second.child.kill('SIGTERM')
  t.equal((await second.exited).code, 0)
  t.equal(await embeddedPostgresUrl(directory), orphan, 'a reused server is left running for `make stop`')
})

t.test('a shutdown that outlasts SHUTDOWN_TIMEOUT_MS exits 1', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const server = startServerProcess(t, {
    DATABASE_URL: databaseUrl,
    SHUTDOWN_DRAIN_DELAY_MS: '10000',
    SHUTDOWN_TIMEOUT_MS: '300',
    ...fileDirectories(),
  })
  await server.waitForLog((line) => line.msg === 'ready')
  const signalled = Date.now()
  server.child.kill('SIGTERM')
  t.equal((await server.exited).code, 1)
  t.ok(Date.now() - signalled < 5000, 'does not wait for the drain delay')
  t.ok(server.logs.some((line) => String(line.msg).includes('killed by timeout')))
})

t.test('a shutdown that times out still stops the embedded PostgreSQL it started', async (t) => {
  const directory = path.join(scratchDirectory(), 'postgres')
  t.teardown(() => stopEmbeddedPostgres(directory))
  const server = startServerProcess(t, {
    EMBEDDED_DATABASE_DIR: directory,
    SHUTDOWN_DRAIN_DELAY_MS: '10000',
    SHUTDOWN_TIMEOUT_MS: '300',
    ...fileDirectories(),
  })
  await server.waitForLog((line) => line.msg === 'ready')
  t.ok(await embeddedPostgresUrl(directory), 'the embedded server runs')
  server.child.kill('SIGTERM')
  t.equal((await server.exited).code, 1, 'the shutdown timed out')
  // PostgreSQL's fast shutdown, asked for as the process exits, completes on its own.
  const deadline = Date.now() + 15_000
  while (existsSync(path.join(directory, 'postmaster.pid')) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.notOk(existsSync(path.join(directory, 'postmaster.pid')), 'no orphaned PostgreSQL is left running')
  t.equal(await embeddedPostgresUrl(directory), null)
})

t.test(
  'during a drain, /ready turns 503 at once, in-flight requests finish, then connections are refused',
  async (t) => {
    let release: () => void = () => {}
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    const app = await buildTestApp(t, {
      beforeReady: (app) => {
        app.get('/fixture/slow', async () => {
          await held
          return { finished: true }
        })
      },
    })
    const address = await app.listen({ host: '127.0.0.1', port: 0 })
    const inFlight = fetch(`${address}/fixture/slow`)
    await new Promise((resolve) => setTimeout(resolve, 100)) // the request is now in the handler

    const drained = drain(app, { reason: 'test', drainDelayMs: 500 })
    const ready = await fetch(`${address}/ready`)
    t.equal(ready.status, 503, 'not ready while draining')
    t.match(await ready.json(), { reason: 'draining' })
    setTimeout(release, 700) // finish the slow request after the server stopped accepting
    const response = await inFlight
    t.equal(response.status, 200)
    t.same(await response.json(), { finished: true })
    await drained
    await t.rejects(fetch(`${address}/live`), 'no new connections after the drain')
  },
)
