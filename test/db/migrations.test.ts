import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type postgres from 'postgres'
import t, { type Test } from 'tap'
import { connect, type DatabaseConnection } from '../../db/connection.ts'
import { migrateDown, migrateToLatest, pendingMigrations } from '../../db/migrator.ts'
import { createTestDatabase } from '../db.ts'

const migrations = [
  '0001_resource_tables',
  '0002_import_jobs',
  '0003_export_jobs',
  '0004_job_hardening',
  '0005_export_downloads',
  '0006_resources_from_descriptors',
  '0007_object_storage',
]
const resourceTables = ['articles', 'comments', 'users']
const importTables = ['articles', 'comments', 'idempotency_keys', 'import_errors', 'import_jobs', 'users']
const jobTables = ['articles', 'comments', 'export_jobs', 'idempotency_keys', 'import_errors', 'import_jobs', 'users']
const allTables = [...jobTables.slice(0, -1), 'uploads', 'users']

/** A connection to a new, empty database of this test (dropped after it). */
async function emptyDatabase(t: Test): Promise<DatabaseConnection> {
  const connection = connect(await createTestDatabase(t, { empty: true }), { max: 2 })
  t.teardown(() => connection.close())
  return connection
}

/** An empty database brought up to date by the migrator itself. */
async function migratedDatabase(t: Test): Promise<postgres.Sql> {
  const connection = await emptyDatabase(t)
  await migrateToLatest(connection.db)
  return connection.sql
}

async function tables(sql: postgres.Sql): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    select tablename as name from pg_tables where schemaname = 'public' and tablename not like 'kysely%' order by 1`
  return rows.map((row) => row.name)
}

/** The SQLSTATE and constraint a statement fails with; null when it succeeds. */
async function violation(query: Promise<unknown>): Promise<{ code: string; constraint?: string } | null> {
  try {
    await query
    return null
  } catch (error) {
    const { code, constraint_name: constraint } = error as postgres.PostgresError
    return constraint ? { code, constraint } : { code }
  }
}

async function insertUser(sql: postgres.Sql, email = 'ada@example.com', role = 'author'): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    insert into users (email, name, role) values (${email}, 'Ada', ${role}) returning id`
  if (!row) throw new Error('no user inserted')
  return row.id
}

t.test('on an empty database, migrateToLatest creates users, articles and comments', async (t) => {
  const { sql, db } = await emptyDatabase(t)
  t.same(await pendingMigrations(db), migrations)
  t.same(await tables(sql), [])

  t.same(await migrateToLatest(db), migrations)
  t.same(await tables(sql), allTables)
  t.same(await pendingMigrations(db), [])
  t.same(await migrateToLatest(db), [], 'a second run has nothing to do')
})

t.test('users: role is one of the four roles', async (t) => {
  const sql = await migratedDatabase(t)
  for (const role of ['admin', 'editor', 'author', 'reader']) {
    t.ok(await insertUser(sql, `${role}@example.com`, role), role)
  }
  t.same(await violation(insertUser(sql, 'boss@example.com', 'boss')), {
    code: '23514',
    constraint: 'users_role_check',
  })
  t.same(await violation(insertUser(sql, 'admin2@example.com', 'Admin')), {
    code: '23514',
    constraint: 'users_role_check',
  })
})

t.test('users: emails are unique regardless of case', async (t) => {
  const sql = await migratedDatabase(t)
  await insertUser(sql, 'User@X.com')
  t.same(await violation(insertUser(sql, 'user@x.com')), { code: '23505', constraint: 'users_email_lower_key' })
  t.same(await violation(insertUser(sql, 'USER@X.COM')), { code: '23505', constraint: 'users_email_lower_key' })
  t.ok(await insertUser(sql, 'user2@x.com'), 'another address is fine')
})

t.test('users: id, active and timestamps have defaults', async (t) => {
  const sql = await migratedDatabase(t)
  const before = await sql<{ now: Date }[]>`select now()`
  const id = await insertUser(sql)
  const [user] = await sql`select * from users where id = ${id}`
  t.match(user?.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  t.equal(user?.active, true)
  t.type(user?.created_at, Date)
  t.ok(user?.created_at.getTime() >= (before[0]?.now.getTime() ?? Number.POSITIVE_INFINITY), 'created_at is now')
  t.same(user?.updated_at, user?.created_at)
})

t.test('articles: slugs are unique and lower-case words joined by single hyphens', async (t) => {
  const sql = await migratedDatabase(t)
  const author = await insertUser(sql)
  const insert = (slug: string) => sql`
    insert into articles (slug, title, body, author_id, status) values (${slug}, 'T', 'B', ${author}, 'draft')`
  await insert('hello-world-2')
  t.same(await violation(insert('hello-world-2')), { code: '23505', constraint: 'articles_slug_key' })
  for (const slug of ['Hello-World', 'hello--world', '-hello', 'hello-', 'hello world', 'héllo', '']) {
    t.same(await violation(insert(slug)), { code: '23514', constraint: 'articles_slug_format_check' }, slug)
  }
})

t.test('articles: status is draft or published, and a draft has no published_at', async (t) => {
  const sql = await migratedDatabase(t)
  const author = await insertUser(sql)
  const insert = (slug: string, status: string, publishedAt: string | null) => sql`
    insert into articles (slug, title, body, author_id, status, published_at)
    values (${slug}, 'T', 'B', ${author}, ${status}, ${publishedAt})`
  t.same(await violation(insert('a', 'archived', null)), { code: '23514', constraint: 'articles_status_check' })
  t.same(await violation(insert('b', 'draft', '2024-01-01T00:00:00Z')), {
    code: '23514',
    constraint: 'articles_draft_unpublished_check',
  })
  t.equal(await violation(insert('c', 'draft', null)), null)
  t.equal(await violation(insert('d', 'published', '2024-01-01T00:00:00Z')), null)
  t.equal(await violation(insert('e', 'published', null)), null, 'a published article may lack the date')
})

t.test('articles: the author must exist, and tags default to an empty array', async (t) => {
  const sql = await migratedDatabase(t)
  const unknown = '00000000-0000-4000-8000-000000000000'
  t.same(
    await violation(sql`
      insert into articles (slug, title, body, author_id, status) values ('a', 'T', 'B', ${unknown}, 'draft')`),
    { code: '23503', constraint: 'articles_author_id_fkey' },
  )
  const author = await insertUser(sql)
  const [article] = await sql<{ tags: string[]; published_at: Date | null }[]>`
    insert into articles (slug, title, body, author_id, status) values ('a', 'T', 'B', ${author}, 'draft')
    returning tags, published_at`
  t.same(article, { tags: [], published_at: null })
})

t.test('comments: the article and the user must exist', async (t) => {
  const sql = await migratedDatabase(t)
  const user = await insertUser(sql)
  const [article] = await sql<{ id: string }[]>`
    insert into articles (slug, title, body, author_id, status) values ('a', 'T', 'B', ${user}, 'draft') returning id`
  const unknown = '00000000-0000-4000-8000-000000000000'
  const insert = (articleId: string, userId: string) => sql`
    insert into comments (id, article_id, user_id, body) values (gen_random_uuid(), ${articleId}, ${userId}, 'Nice')`
  t.same(await violation(insert(unknown, user)), { code: '23503', constraint: 'comments_article_id_fkey' })
  t.same(await violation(insert(article?.id ?? '', unknown)), { code: '23503', constraint: 'comments_user_id_fkey' })
  t.equal(await violation(insert(article?.id ?? '', user)), null)
  const [comment] = await sql<{ created_at: Date }[]>`select created_at from comments`
  t.type(comment?.created_at, Date, 'created_at defaults to now')
})

t.test('a plain COPY of the docs/contract.md §1 users columns loads rows', async (t) => {
  const sql = await migratedDatabase(t)
  // A COPY the server rejects is left out: postgres.js 3.4.9 never settles the writable then
  // (porsager/postgres#1173), so the test would hang instead of failing.
  const writable = await sql`
    copy users (id, email, name, role, active, created_at, updated_at) from stdin (format csv)`.writable()
  const csv = [
    '7d9f2c1e-5b4a-4c3d-9e8f-0a1b2c3d4e5f,ada@example.com,Ada Lovelace,admin,true,2024-01-02T03:04:05Z,2024-01-02T03:04:05Z',
    '1b2c3d4e-5f60-4718-89ab-cdef01234567,grace@example.com,"Hopper, Grace",reader,false,2024-02-03T04:05:06Z,2024-03-04T05:06:07Z',
  ]
  await pipeline(Readable.from([`${csv.join('\n')}\n`]), writable)

  const rows = await sql`select * from users order by email`
  t.same(rows, [
    {
      id: '7d9f2c1e-5b4a-4c3d-9e8f-0a1b2c3d4e5f',
      email: 'ada@example.com',
      name: 'Ada Lovelace',
      role: 'admin',
      active: true,
      created_at: new Date('2024-01-02T03:04:05Z'),
      updated_at: new Date('2024-01-02T03:04:05Z'),
    },
    {
      id: '1b2c3d4e-5f60-4718-89ab-cdef01234567',
      email: 'grace@example.com',
      name: 'Hopper, Grace',
      role: 'reader',
      active: false,
      created_at: new Date('2024-02-03T04:05:06Z'),
      updated_at: new Date('2024-03-04T05:06:07Z'),
    },
  ])
})

t.test('migrateDown reverts one migration at a time, and migrateToLatest brings them back', async (t) => {
  const { sql, db } = await emptyDatabase(t)
  await migrateToLatest(db)
  await insertUser(sql)

  t.same(await migrateDown(db), ['0007_object_storage'])
  t.same(await tables(sql), jobTables, 'the uploads go')
  t.same(await migrateDown(db), ['0006_resources_from_descriptors'])
  t.same(await migrateDown(db), ['0005_export_downloads'])
  t.same(await migrateDown(db), ['0004_job_hardening'])
  t.same(await tables(sql), jobTables, 'the columns go, the tables stay')
  t.same(await migrateDown(db), ['0003_export_jobs'])
  t.same(await tables(sql), importTables)
  t.same(await migrateDown(db), ['0002_import_jobs'])
  t.same(await tables(sql), resourceTables)
  t.same(await migrateDown(db), ['0001_resource_tables'])
  t.same(await tables(sql), [])
  t.same(await pendingMigrations(db), migrations)
  t.same(await migrateDown(db), [], 'nothing left to revert')

  t.same(await migrateToLatest(db), migrations)
  t.same(await tables(sql), allTables)
  t.same(await sql`select count(*)::int as n from users`, [{ n: 0 }], 'the tables start empty again')
})
