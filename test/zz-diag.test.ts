import postgres from 'postgres'
import t from 'tap'
import { createTestDatabase } from './db.ts'
import { buildTestApp } from './helper.ts'

t.test('diag', async (t) => {
  const url = await createTestDatabase(t)
  const name = new URL(url).pathname.slice(1)
  const app = await buildTestApp(t, { databaseUrl: url, environment: { HEALTH_TIMEOUT_MS: '1000' } })
  t.equal((await app.inject({ url: '/health' })).statusCode, 200)
  const admin = postgres(new URL('/postgres', url).toString(), { max: 1 })
  t.teardown(() => admin.end())
  await admin`alter database ${admin(name)} allow_connections false`
  await admin`select pg_terminate_backend(pid) from pg_stat_activity where datname = ${name}`
  let s = Date.now()
  const h = await app.inject({ url: '/health' })
  t.comment(Date.now() - s, h.body)
  s = Date.now()
  const r = await app.inject({ url: '/ready' })
  t.comment(Date.now() - s, r.body)
  await admin`alter database ${admin(name)} allow_connections true`
  for (let i = 0; i < 5; i++) {
    s = Date.now()
    const h2 = await app.inject({ url: '/health' })
    t.comment(Date.now() - s, h2.body)
  }
})
