import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { gunzipSync } from 'node:zlib'
import { parse } from 'csv-parse/sync'
import t from 'tap'
import {
  articleId,
  columns,
  commentId,
  defectKinds,
  describeDefects,
  type Format,
  type GenerateOptions,
  generate,
  type Resource,
  userId,
} from '../../bench/generate.ts'

// The generator is checked against an independent reading of docs/contract.md §1–§2: the files are parsed with
// csv-parse and JSON.parse, and every record is classified by the rules below, not by the
// generator's own decisions.

const root = path.dirname(path.dirname(path.dirname(fileURLToPath(import.meta.url))))
const resources: Resource[] = ['users', 'articles', 'comments']
const formats: Format[] = ['csv', 'ndjson', 'json']
type Row = Record<string, unknown>

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk)
  return Buffer.concat(chunks)
}

async function textOf(options: GenerateOptions): Promise<string> {
  return (await bytesOf(generate(options))).toString('utf8')
}

/** The records of a file: CSV cells as strings, JSON values as they are. */
function parseFile(format: Format, text: string): Row[] {
  if (format === 'csv') return parse(text, { columns: true }) as Row[]
  if (format === 'json') return JSON.parse(text) as Row[]
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Row)
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/
const SLUG = /^[a-z0-9]+(-[a-z0-9]+)*$/
const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$/

function isTimestamp(value: unknown): boolean {
  const match = typeof value === 'string' ? TIMESTAMP.exec(value) : null
  if (!match) return false
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as number[]
  const date = new Date(Date.UTC(year as number, (month as number) - 1, day, hour, minute, second))
  return date.getUTCMonth() === (month as number) - 1 && date.getUTCDate() === day && date.getUTCHours() === hour
}

const present = (value: unknown) => value !== undefined && value !== ''
const blank = (value: unknown) => typeof value !== 'string' || value.trim() === ''
const idSet = (idOf: (seed: number, index: number) => string, seed: number, count: number) =>
  new Set(Array.from({ length: count }, (_, index) => idOf(seed, index)))

/**
 * Every docs/contract.md §2 rule a record of an ndjson file breaks, named like the generator's defect kinds
 * (missing_id included, though the contract accepts it for users and articles). `seen` holds the natural
 * keys of the earlier records that an import would have stored.
 */
function classify(resource: Resource, row: Row, seen: Set<string>, users: Set<string>, articles: Set<string>) {
  const broken: string[] = []
  const check = (kind: string, fails: boolean) => fails && broken.push(kind)
  check('missing_id', !present(row.id))
  check('invalid_id', present(row.id) && !UUID.test(String(row.id)))
  if (resource === 'users') {
    check('invalid_email', !EMAIL.test(String(row.email)))
    check('duplicate_email', seen.has(String(row.email).toLowerCase()))
    check('blank_name', blank(row.name))
    check('invalid_role', !['admin', 'editor', 'author', 'reader'].includes(String(row.role)))
    check('invalid_active', typeof row.active !== 'boolean')
    check('invalid_timestamp', !isTimestamp(row.created_at) || !isTimestamp(row.updated_at))
    if (broken.length === 0 || broken[0] === 'missing_id') seen.add(String(row.email).toLowerCase())
  } else if (resource === 'articles') {
    check('invalid_slug', !SLUG.test(String(row.slug)))
    check('duplicate_slug', seen.has(String(row.slug)))
    check('blank_title', blank(row.title))
    check('blank_body', blank(row.body))
    check('unknown_author', !users.has(String(row.author_id)))
    const tags = row.tags
    check('invalid_tags', !Array.isArray(tags) || tags.some(blank))
    check('invalid_status', row.status !== 'draft' && row.status !== 'published')
    check('draft_with_published_at', row.status === 'draft' && row.published_at !== null)
    check('invalid_timestamp', row.published_at !== null && !isTimestamp(row.published_at))
    if (broken.length === 0 || broken[0] === 'missing_id') seen.add(String(row.slug))
  } else {
    check('unknown_article', !articles.has(String(row.article_id)))
    check('unknown_user', !users.has(String(row.user_id)))
    check('missing_body', !('body' in row))
    check('empty_body', 'body' in row && blank(row.body))
    check('body_too_long', String(row.body).length > 10_000 || String(row.body).split(/\s+/).length > 500)
    check('invalid_timestamp', !isTimestamp(row.created_at))
  }
  return broken
}

/** Counts of each kind in an ndjson file, and the records that broke more than one rule. */
async function classifyFile(options: GenerateOptions) {
  const seed = options.seed ?? 1
  const users = idSet(userId, seed, options.users ?? options.rows)
  const articles = idSet(articleId, seed, options.articles ?? options.rows)
  const counts: Record<string, number> = Object.fromEntries(
    Object.keys(defectKinds[options.resource]).map((k) => [k, 0]),
  )
  const seen = new Set<string>()
  const rows = parseFile('ndjson', await textOf({ ...options, format: 'ndjson' }))
  const multiple: Row[] = []
  const valid: Row[] = []
  for (const row of rows) {
    const broken = classify(options.resource, row, seen, users, articles)
    if (broken.length > 1) multiple.push(row)
    if (broken.length === 0) valid.push(row)
    for (const kind of broken) counts[kind] = (counts[kind] ?? 0) + 1
  }
  return { counts, multiple, valid, rows }
}

t.test('the same options give byte-identical output; another seed or rate gives other bytes', async (t) => {
  const digest = async (options: GenerateOptions) =>
    createHash('sha256')
      .update(await bytesOf(generate(options)))
      .digest('hex')
  for (const resource of resources) {
    const options: GenerateOptions = { resource, format: 'csv', rows: 2000, defectRate: 0.05, seed: 7 }
    const first = await digest(options)
    t.equal(await digest({ ...options }), first, `${resource}: same bytes`)
    t.not(await digest({ ...options, seed: 8 }), first, `${resource}: another seed`)
    t.not(await digest({ ...options, defectRate: 0.1 }), first, `${resource}: another defect rate`)
  }
})

t.test('every format holds one record per row, with the docs/contract.md §1 columns in order', async (t) => {
  for (const resource of resources) {
    for (const format of formats) {
      const text = await textOf({ resource, format, rows: 500, defectRate: 0.1 })
      const records = parseFile(format, text)
      t.equal(records.length, 500, `${resource} ${format}: records`)
      const lines = text.split('\n')
      t.equal(lines.pop(), '', `${resource} ${format}: ends with a newline`)
      if (format === 'csv') {
        t.equal(lines[0], columns[resource].join(','), `${resource}: header`)
        if (resource === 'users') t.equal(lines.length, 501, 'users: one line per row after the header')
        if (resource === 'articles') t.ok(lines.length > 501, 'articles: bodies hold quoted newlines')
      }
      if (format === 'ndjson') t.equal(lines.length, 500, `${resource}: one line per row`)
      if (format === 'json') t.same([lines[0], lines.at(-1), lines.length], ['[', ']', 502], `${resource}: json`)
      const keys = Object.keys(records[1] ?? {})
      t.same(keys, columns[resource], `${resource} ${format}: keys in docs/contract.md §1 order`)
    }
  }
})

t.test('JSON lines are exactly what JSON.stringify writes (escaping, unicode)', async (t) => {
  for (const resource of resources) {
    const text = await textOf({ resource, format: 'ndjson', rows: 3000, defectRate: 0.2 })
    const differing = text.split('\n').filter((line) => line !== '' && JSON.stringify(JSON.parse(line)) !== line)
    t.same(differing, [], resource)
  }
  const json = await textOf({ resource: 'articles', format: 'json', rows: 3 })
  t.match(json, /^\[\n\{.*\},\n\{.*\},\n\{.*\}\n\]\n$/)
})

t.test('CSV and ndjson carry the same values (CSV quoting round-trips)', async (t) => {
  const asCsvCell = (value: unknown) =>
    value === undefined || value === null ? '' : typeof value === 'string' ? value : String(value)
  const csvTags = (cell: string) => (cell === '' ? [] : cell.startsWith('[') ? JSON.parse(cell) : cell.split('|'))
  for (const resource of resources) {
    const options: GenerateOptions = { resource, format: 'csv', rows: 3000, defectRate: 0.2 }
    const csv = parseFile('csv', await textOf(options))
    const ndjson = parseFile('ndjson', await textOf({ ...options, format: 'ndjson' }))
    let mismatches = 0
    csv.forEach((record, i) => {
      const object = ndjson[i] as Row
      for (const column of columns[resource]) {
        const same =
          column === 'tags'
            ? JSON.stringify(csvTags(String(record.tags))) === JSON.stringify(object.tags)
            : record[column] === asCsvCell(object[column])
        if (!same && mismatches++ < 5) t.fail(`${resource} row ${i} ${column}: ${record[column]} / ${object[column]}`)
      }
    })
    t.equal(mismatches, 0, `${resource}: every cell`)
  }
})

t.test('defect rate 0 gives only rows that are valid per docs/contract.md §2', async (t) => {
  for (const resource of resources) {
    const { counts, valid, rows } = await classifyFile({ resource, format: 'ndjson', rows: 5000, seed: 3 })
    t.equal(valid.length, rows.length, `${resource}: every row valid`)
    t.same(
      Object.values(counts),
      Object.values(counts).map(() => 0),
      `${resource}: no defects`,
    )
    t.same(describeDefects({ resource, format: 'csv', rows: 5000, seed: 3 }), counts)
  }
  const users = parseFile('ndjson', await textOf({ resource: 'users', format: 'ndjson', rows: 5000 }))
  const micro = users.filter((user) => /\.\d{6}Z$/.test(String(user.created_at))).length
  t.ok(micro > 1000 && micro < 1500, `a quarter of timestamps carry microseconds (${micro})`)
  const articles = parseFile('ndjson', await textOf({ resource: 'articles', format: 'ndjson', rows: 5000 }))
  const statuses = new Set(articles.map((article) => `${article.status}/${article.published_at === null}`))
  t.same([...statuses].sort(), ['draft/true', 'published/false'])
  t.ok(
    articles.some((article) => /[\u0080-\u{10ffff}]/u.test(String(article.body))),
    'bodies hold unicode',
  )
})

t.test('each defective row breaks exactly one rule, and the counts are those of describeDefects', async (t) => {
  for (const resource of resources) {
    const options: GenerateOptions = { resource, format: 'ndjson', rows: 4000, defectRate: 0.2, seed: 5 }
    const { counts, multiple, valid } = await classifyFile(options)
    t.same(multiple, [], `${resource}: no row breaks two rules`)
    t.same(counts, describeDefects(options), `${resource}: counts`)
    const defects = Object.values(counts).reduce((sum, count) => sum + count, 0)
    t.equal(valid.length + defects, 4000)
    t.ok(defects > 700 && defects < 900, `${resource}: about 20% defective (${defects})`)
    for (const [kind, count] of Object.entries(counts)) t.ok(count > 60, `${resource}: ${kind} (${count})`)
  }
})

t.test('defect counts do not depend on the format, and scale with the rate', async (t) => {
  const options: GenerateOptions = { resource: 'comments', format: 'csv', rows: 20_000, defectRate: 0.01 }
  const counts = describeDefects(options)
  t.same(describeDefects({ ...options, format: 'json' }), counts)
  const total = Object.values(counts).reduce((sum, count) => sum + count, 0)
  t.ok(total > 150 && total < 250, `about 1% (${total})`)
  t.same(Object.values(describeDefects({ ...options, defectRate: 0 })), [0, 0, 0, 0, 0, 0])
  const all = describeDefects({ ...options, rows: 1000, defectRate: 1 })
  t.equal(
    Object.values(all).reduce((sum, count) => sum + count, 0),
    1000,
  )
})

t.test('articles and comments reference the valid rows of files generated separately', async (t) => {
  const seed = 11
  const users = await classifyFile({ resource: 'users', format: 'ndjson', rows: 400, defectRate: 0.5, seed })
  const articles = await classifyFile({
    resource: 'articles',
    ...{ format: 'ndjson', rows: 300, users: 400, defectRate: 0.5, seed },
  })
  const comments = await classifyFile({
    resource: 'comments',
    ...{ format: 'ndjson', rows: 600, users: 400, articles: 300, defectRate: 0.3, seed },
  })
  const validUsers = new Set(users.valid.map((user) => user.id))
  const validArticles = new Set(articles.valid.map((article) => article.id))
  t.ok(
    articles.valid.every((article) => validUsers.has(article.author_id)),
    'valid articles have valid authors',
  )
  t.ok(
    comments.valid.every((comment) => validArticles.has(comment.article_id) && validUsers.has(comment.user_id)),
    'valid comments reference valid articles and users',
  )
  users.rows.forEach((user, index) => {
    if (user.id !== undefined && user.id !== userId(seed, index)) t.fail(`users row ${index} id`)
  })
  t.equal(comments.rows[9]?.id, commentId(seed, 9))
  t.equal(articles.rows[0]?.id ?? articleId(seed, 0), articleId(seed, 0))
  const allIds = [...users.rows, ...articles.rows, ...comments.rows].map((row) => row.id).filter(present)
  t.equal(new Set(allIds).size, allIds.length, 'ids are unique across resources')
  t.ok(
    allIds.every((id) => UUID.test(String(id))),
    'ids are lower-case UUIDs',
  )
})

t.test('the stream is generated on demand (back-pressure), not ahead of the reader', async (t) => {
  // 10 million rows would be over a gigabyte: only what fills the stream's buffer may exist.
  const stream = generate({ resource: 'users', format: 'csv', rows: 10_000_000 })
  await once(stream, 'readable')
  t.ok(stream.readableLength <= 256 * 1024, `buffered before the first read: ${stream.readableLength} bytes`)
  let read = 0
  for (let chunk = stream.read(); chunk !== null && read < 1 << 20; chunk = stream.read()) read += chunk.length
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.ok(stream.readableLength <= 256 * 1024, `buffered after reading ${read} bytes: ${stream.readableLength}`)
  t.notOk(stream.readableEnded)
  stream.destroy()
})

t.test('the CLI writes the same bytes to stdout, to a file and gzip-compressed', async (t) => {
  const run = promisify(execFile)
  const script = path.join(root, 'bench', 'generate.ts')
  const args = ['--resource', 'articles', '--format', 'ndjson', '--rows', '2000', '--defect-rate', '0.05']
  const expected = await bytesOf(
    generate({ resource: 'articles', format: 'ndjson', rows: 2000, defectRate: 0.05, seed: 1 }),
  )
  const stdout = await run(process.execPath, [script, ...args], { encoding: 'buffer', maxBuffer: 1 << 30 })
  t.ok(stdout.stdout.equals(expected), 'stdout')
  const directory = mkdtempSync(path.join(tmpdir(), 'bulk-io-generate-'))
  await run(process.execPath, [script, ...args, '--out', path.join(directory, 'plain.ndjson')])
  t.ok(readFileSync(path.join(directory, 'plain.ndjson')).equals(expected), '--out')
  await run(process.execPath, [script, ...args, '--gzip', '--out', path.join(directory, 'articles.ndjson.gz')])
  const compressed = readFileSync(path.join(directory, 'articles.ndjson.gz'))
  t.ok(compressed.length < expected.length / 3, 'compressed')
  t.ok(gunzipSync(compressed).equals(expected), '--gzip decompresses to the same bytes')
  const described = await run(process.execPath, [script, ...args, '--describe'])
  t.same(
    JSON.parse(described.stdout),
    describeDefects({ resource: 'articles', format: 'ndjson', rows: 2000, defectRate: 0.05 }),
  )
})

t.test('invalid options are refused with a clear message', async (t) => {
  const base: GenerateOptions = { resource: 'users', format: 'csv', rows: 10 }
  t.throws(() => generate({ ...base, rows: -1 }), new RangeError('rows must be an integer from 0 to 100000000, got -1'))
  t.throws(() => generate({ ...base, defectRate: 2 }), /defectRate must be a number from 0 to 1/)
  t.throws(() => generate({ ...base, format: 'xml' as Format }), /format must be one of csv, ndjson, json/)
  t.throws(() => generate({ ...base, resource: 'articles', users: 0 }), /articles need users >= 1/)
  t.throws(() => userId(1, -1), RangeError)
  const run = promisify(execFile)
  const failed = await run(process.execPath, [path.join(root, 'bench', 'generate.ts'), '--resource', 'users']).catch(
    (error) => error,
  )
  t.equal(failed.code, 2)
  t.match(failed.stderr, /--resource, --format and --rows are required/)
  t.equal(await textOf({ ...base, rows: 0 }), `${columns.users.join(',')}\n`, 'zero rows: the header only')
  t.equal(await textOf({ ...base, rows: 0, format: 'json' }), '[\n]\n')
})
