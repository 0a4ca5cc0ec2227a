import type { FastifyInstance } from 'fastify'
import t from 'tap'
import type { ExportFormat } from '../../../db/exports.ts'
import { buildTestApp, importAndWait } from '../../helper.ts'

// Round trip (issue 4): exporting every resource in a format and importing those files into an
// empty database gives identical tables — timestamps to the microsecond, tags, booleans, nulls,
// unicode, commas, quotes, backslashes and line breaks inside text.

/** Text that breaks naive CSV and JSON writers and readers. */
const hostile = [
  'comma, inside',
  'a "quoted" word',
  'back\\slash and \\N and \\\\',
  'line\nbreak',
  'windows\r\nline break',
  'tab\there',
  'unicode: Zürich, Ελληνικά, 日本語, emoji 🚀👩‍💻, combining é',
  '=SUM(A1:A9) looks like a formula',
  '+1 and -1 and @mention',
  "it's an apostrophe",
  'NULL',
  '[not json',
  '{"json":"object"}',
  'pipe | inside',
]

const uuid = (n: number, prefix: string) => `${prefix}${n.toString(16).padStart(12, '0')}`

/** Seeds users, articles and comments whose text is hostile, straight through SQL. */
async function seed(app: FastifyInstance): Promise<void> {
  const users = hostile.map((text, index) => ({
    id: uuid(index + 1, 'a0000000-0000-4000-8000-'),
    email: index === 0 ? 'Mixed.Case+Tag@Example.COM' : `user${index}@example.org`,
    name: text.trim(),
    role: ['admin', 'editor', 'author', 'reader'][index % 4],
    active: index % 3 !== 0,
    created_at: `19${String(70 + index).padStart(2, '0')}-01-02T03:04:05.${String(123456 + index).padStart(6, '0')}Z`,
    updated_at: `2999-12-31T23:59:59.${String(index).padStart(6, '0')}+05:30`,
  }))
  await app.sql`insert into users ${app.sql(users)}`
  const articles = hostile.map((text, index) => ({
    id: uuid(index + 1, 'b0000000-0000-4000-8000-'),
    slug: `article-${index}`,
    title: text.trim(),
    // Bodies are stored as given: surrounding whitespace included.
    body: index % 2 === 0 ? `  ${text}\n` : text,
    author_id: users[index % users.length]?.id as string,
    tags:
      index === 0 ? [] : index === 1 ? ['a|b', 'c,d', 'quote"d', 'back\\slash', '日本'] : [text.trim(), `tag-${index}`],
    status: index % 2 === 0 ? 'draft' : 'published',
    published_at: index % 2 === 0 ? null : `2024-02-29T12:00:00.${String(index * 7).padStart(6, '0')}Z`,
  }))
  await app.sql`insert into articles ${app.sql(articles)}`
  const comments = hostile.map((text, index) => ({
    id: uuid(index + 1, 'c0000000-0000-4000-8000-'),
    article_id: articles[(index * 5) % articles.length]?.id as string,
    user_id: users[(index * 3) % users.length]?.id as string,
    body: index % 3 === 0 ? `\t${text} ` : text,
    created_at: `2025-06-15T08:30:00.${String(999999 - index).padStart(6, '0')}Z`,
  }))
  await app.sql`insert into comments ${app.sql(comments)}`
}

/** A table's rows as one JSON text, timestamps in UTC to the microsecond. */
async function tableText(app: FastifyInstance, table: 'users' | 'articles' | 'comments'): Promise<string> {
  const [row] = await app.sql.begin(async (transaction) => {
    await transaction`set local timezone = 'UTC'`
    return transaction<{ rows: string }[]>`
      select coalesce(json_agg(t order by t.id), '[]')::text as rows from ${transaction(table)} t`
  })
  return row?.rows ?? ''
}

const source = await buildTestApp(t)
await seed(source)

for (const format of ['csv', 'ndjson', 'json'] as const satisfies readonly ExportFormat[]) {
  t.test(`${format}: export, import into an empty database, identical tables`, async (t) => {
    const target = await buildTestApp(t)
    target.jobs.start()
    for (const resource of ['users', 'articles', 'comments'] as const) {
      const exported = await source.inject({ url: `/api/v1/exports/${resource}/stream?format=${format}` })
      t.equal(exported.statusCode, 200, `${resource} exported`)
      const job = await importAndWait(target, {
        resource,
        filename: `${resource}.${format}`,
        file: exported.rawPayload,
      })
      t.same(
        { status: job.status, counters: job.counters, errors: job.errors },
        {
          status: 'completed',
          counters: { processed: hostile.length, inserted: hostile.length, updated: 0, failed: 0 },
          errors: [],
        },
        `${resource} imported without an error`,
      )
      t.equal(await tableText(target, resource), await tableText(source, resource), `${resource} identical`)
    }
  })
}
