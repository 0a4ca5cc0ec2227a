import postgres from 'postgres'
import t from 'tap'
import { buildApp } from '../../app/app.ts'
import { connect } from '../../db/connection.ts'
import { migrateToZero } from '../../db/migrator.ts'
import { createTestDatabase } from '../db.ts'
import { buildTestApp, testConfig } from '../helper.ts'

const problemType = (code: string) => `urn:bulk-io:problem:${code.replaceAll('_', '-')}`

t.test('GET /live answers 200 with the uptime', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({ url: '/live' })
  t.equal(response.statusCode, 200)
  t.match(response.json(), { status: 'alive', uptime_seconds: Number })
})

t.test('GET /health reports the database as up with its round-trip time', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({ url: '/health' })
  t.equal(response.statusCode, 200)
  const body = response.json()
  t.equal(body.status, 'ok')
  t.equal(body.database.status, 'up')
  t.equal(body.database.mode, 'external')
  t.ok(body.database.latency_ms >= 0 && body.database.latency_ms < 2000, 'latency is a plausible number of ms')
  t.match(body.database.server_version, /^\d+/)
})

t.test('GET /ready answers 200 once migrations ran and the database answers', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({ url: '/ready' })
  t.equal(response.statusCode, 200)
  t.same(response.json(), { status: 'ready' })
})

t.test('a database that stops answering turns /health and /ready into 503 problems, and back', async (t) => {
  const url = await createTestDatabase(t)
  const name = new URL(url).pathname.slice(1)
  const app = await buildTestApp(t, { databaseUrl: url, environment: { HEALTH_TIMEOUT_MS: '1000' } })
  t.equal((await app.inject({ url: '/health' })).statusCode, 200)

  // Take the database away the way an outage does: refuse new connections, cut the open ones.
  const admin = postgres(new URL('/postgres', url).toString(), { max: 1 })
  t.teardown(() => admin.end())
  await admin`alter database ${admin(name)} allow_connections false`
  await admin`select pg_terminate_backend(pid) from pg_stat_activity where datname = ${name}`

  const health = await app.inject({ url: '/health' })
  t.equal(health.statusCode, 503)
  t.equal(health.headers['content-type'], 'application/problem+json; charset=utf-8')
  const body = health.json()
  t.match(body, {
    type: problemType('database_unavailable'),
    title: 'Database unavailable',
    status: 503,
    code: 'database_unavailable',
    instance: health.headers['x-request-id'],
    database: { status: 'down', mode: 'external', latency_ms: null, error: String },
  })
  t.match(body.detail, /^The database is not answering: /)

  const ready = await app.inject({ url: '/ready' })
  t.equal(ready.statusCode, 503)
  t.match(ready.json(), { code: 'database_unavailable', reason: 'database_down' })

  await admin`alter database ${admin(name)} allow_connections true`
  t.equal((await app.inject({ url: '/health' })).statusCode, 200, 'recovers when the database is back')
  t.equal((await app.inject({ url: '/ready' })).statusCode, 200)
})

t.test('an unreachable database server gives 503 on /health and /ready, and /live stays 200', async (t) => {
  // Port 1 on loopback: nothing listens there, the connection is refused at once.
  const app = await buildApp({
    config: testConfig({ HEALTH_TIMEOUT_MS: '1000' }),
    database: { url: 'postgres://nobody@127.0.0.1:1/none', mode: 'external' },
  })
  t.teardown(() => app.close())
  await app.ready()
  const health = await app.inject({ url: '/health' })
  t.equal(health.statusCode, 503)
  t.match(health.json(), { code: 'database_unavailable', database: { status: 'down' } })
  t.equal((await app.inject({ url: '/ready' })).statusCode, 503)
  t.equal((await app.inject({ url: '/live' })).statusCode, 200)
})

t.test('with MIGRATE_ON_START=false, /ready stays 503 until the pending migrations are applied', async (t) => {
  const url = await createTestDatabase(t)
  const outside = connect(url, { max: 1 })
  t.teardown(() => outside.close())
  await migrateToZero(outside.db)

  const app = await buildTestApp(t, { databaseUrl: url, environment: { MIGRATE_ON_START: 'false' } })
  t.equal(app.migrations.ready, false)
  const ready = await app.inject({ url: '/ready' })
  t.equal(ready.statusCode, 503)
  t.match(ready.json(), {
    code: 'service_unavailable',
    reason: 'migrations_pending',
    detail: 'Migrations are pending and MIGRATE_ON_START is false: run `make migrate-up`.',
  })
  const tables = await outside.sql`select count(*)::int as n from pg_tables where tablename = 'users'`
  t.equal(tables[0]?.n, 0, 'the service did not migrate by itself')

  await app.migrations.recheck()
  const { migrateToLatest } = await import('../../db/migrator.ts')
  await migrateToLatest(outside.db)
  t.equal((await app.inject({ url: '/ready' })).statusCode, 200, 'ready once migrated from outside')
})

t.test('while draining, /ready answers 503 and /live still 200', async (t) => {
  const app = await buildTestApp(t)
  app.lifecycle.draining = true
  const ready = await app.inject({ url: '/ready' })
  t.equal(ready.statusCode, 503)
  t.match(ready.json(), { code: 'service_unavailable', reason: 'draining', detail: 'The service is shutting down.' })
  t.equal((await app.inject({ url: '/live' })).statusCode, 200)
})
