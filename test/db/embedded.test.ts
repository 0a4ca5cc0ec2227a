import path from 'node:path'
import postgres from 'postgres'
import t from 'tap'
import { embeddedPostgresUrl, startEmbeddedPostgres, stopEmbeddedPostgres } from '../../db/embedded.ts'
import { scratchDirectory } from '../helper.ts'

// Each subtest runs initdb on a directory of its own (about 1.5 s), so there are only two.

async function query<T extends postgres.Row>(url: string, run: (sql: postgres.Sql) => Promise<T[]>): Promise<T[]> {
  const sql = postgres(url, { max: 1, onnotice: () => {} })
  try {
    return await run(sql)
  } finally {
    await sql.end()
  }
}

t.test('a second start on the same directory attaches; only the handle that started it stops it', async (t) => {
  const directory = path.join(scratchDirectory(), 'postgres')
  t.teardown(() => stopEmbeddedPostgres(directory))
  const first = await startEmbeddedPostgres({ directory, port: 0 })
  t.equal(first.startedHere, true)
  t.ok(first.port > 0, 'port 0 picked a free port')
  t.equal(first.url, `postgres://postgres:postgres@127.0.0.1:${first.port}/postgres`)
  const [row] = await query(first.url, (sql) => sql`select current_setting('server_version') as version`)
  t.match(row?.version, /^17\./)

  const second = await startEmbeddedPostgres({ directory, port: 0 })
  t.equal(second.startedHere, false)
  t.equal(second.port, first.port)
  t.equal(second.url, first.url)
  t.equal(await embeddedPostgresUrl(directory), first.url)

  await second.stop()
  t.equal(await embeddedPostgresUrl(directory), first.url, 'stopping the attached handle leaves it running')
  t.same(await query(first.url, (sql) => sql`select 1 as one`), [{ one: 1 }])

  await first.stop()
  t.equal(await embeddedPostgresUrl(directory), null, 'stopping the first handle stops the server')
  t.equal(await stopEmbeddedPostgres(directory), false, 'nothing left to stop')
})

t.test('a released server keeps its data and is stopped by stopEmbeddedPostgres', async (t) => {
  const directory = path.join(scratchDirectory(), 'postgres')
  t.teardown(() => stopEmbeddedPostgres(directory))
  const initial = await startEmbeddedPostgres({ directory, port: 0 })
  await query(initial.url, (sql) =>
    sql`create table kept (value text); insert into kept values ('still here')`.simple(),
  )
  await initial.stop()

  const restarted = await startEmbeddedPostgres({ directory, port: 0 })
  t.equal(restarted.startedHere, true, 'the existing data directory is started again, without initdb')
  restarted.release()
  t.same(await query(restarted.url, (sql) => sql`select value from kept`), [{ value: 'still here' }])

  t.equal(await stopEmbeddedPostgres(directory), true)
  t.equal(await embeddedPostgresUrl(directory), null)
})
