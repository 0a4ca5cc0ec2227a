import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { articleId, commentId, userId } from '../../../bench/generate.ts'
import { buildTestApp, importAndWait } from '../../helper.ts'
import {
  databaseArticles,
  databaseComments,
  databaseUsers,
  differences,
  errorCodes,
  failureCodes,
  OracleDatabase,
  type OracleOutcome,
  oracleArticles,
  oracleComments,
  oracleUsers,
  type RecordSource,
  type Resource,
} from '../../import-oracle.ts'

// docs/contract.md §3: batching must never change the outcome of applying the records one at a time. Random
// files full of repeated ids, emails in other cases, missing ids, invalid values, missing
// references and natural keys that move from row to row are imported with BATCH_SIZE 1, 7 and
// 1000, each into a fresh database, and compared with test/import-oracle.ts: the counters, the
// failed records with their errors, and the tables. Each batch size runs with its own number of
// validation threads, so that both ways of validating batches are held to it: in the job thread
// (IMPORT_THREADS 0) and in threads whose batches come back in any order (1, 2).
//
// A failure names its seed; `DIFFERENTIAL_SEED=<seed>` runs only that seed for every scenario.

const BATCH_SIZES = [1, 7, 1000]
const IMPORT_THREADS: Record<number, string> = { 1: '1', 7: '2', 1000: '0' }

// ---------------------------------------------------------------------------------------------
// Reproducible randomness

/** mulberry32: a small seeded PRNG. */
class Random {
  #state: number
  constructor(seed: number) {
    this.#state = seed >>> 0
  }
  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) | 0
    let x = this.#state
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
  below(count: number): number {
    return Math.floor(this.next() * count)
  }
  chance(probability: number): boolean {
    return this.next() < probability
  }
  pick<T>(list: readonly T[]): T {
    return list[this.below(list.length)] as T
  }
  /** Picks by weight: `[[weight, value], ...]`. */
  weighted<T>(choices: readonly (readonly [number, T])[]): T {
    let roll = this.next() * choices.reduce((sum, [weight]) => sum + weight, 0)
    for (const [weight, choice] of choices) {
      roll -= weight
      if (roll < 0) return choice
    }
    return (choices.at(-1) as readonly [number, T])[1]
  }
}

/** The same text with each letter in a random case. */
function anyCase(random: Random, text: string): string {
  if (random.chance(0.6)) return text
  return [...text].map((character) => (random.chance(0.5) ? character.toUpperCase() : character.toLowerCase())).join('')
}

/** Surrounding white space now and then: values are trimmed before they are validated. */
function padded(random: Random, text: string): string {
  return random.chance(0.1) ? `${random.pick([' ', '  ', '\t'])}${text}${random.pick([' ', ''])}` : text
}

/** A valid ISO-8601 timestamp with a zone: Z or an offset, 0 to 6 fractional digits. */
function timestamp(random: Random): string {
  const two = (value: number) => String(value).padStart(2, '0')
  const date = `${2001 + random.below(23)}-${two(1 + random.below(12))}-${two(1 + random.below(28))}`
  const time = `${two(random.below(24))}:${two(random.below(60))}:${two(random.below(60))}`
  const digits = random.below(7)
  const fraction = digits ? `.${String(random.below(10 ** digits)).padStart(digits, '0')}` : ''
  const zone = random.weighted([
    [3, 'Z'],
    [1, `+${two(random.below(15))}:${random.pick(['00', '30', '45'])}`],
    [1, `-${two(random.below(12))}${random.pick(['00', '30'])}`],
  ])
  return `${date}T${time}${fraction}${zone}`
}

const INVALID_TIMESTAMPS = [
  '2023-13-01T00:00:00Z',
  '2023-02-29T12:00:00Z',
  '2023-01-01T00:00:00',
  '2023-01-01T00:00:00.1234567Z',
  'yesterday',
]
const INVALID_UUIDS = ['not-a-uuid', '1234', '0e2c8b4e-9a1f-4c3d-8b2a-6f1e0d9c8b7']

/**
 * An optional field that is absent: in CSV an empty cell (quoted or not, or blank); in JSON a
 * missing key, null or an empty string.
 */
const ABSENT = Symbol('absent')
type Cell = string | number | boolean | null | unknown[] | typeof ABSENT

function absentAs(random: Random, source: RecordSource): Cell {
  if (source === 'csv') return random.pick(['', '', ' '])
  return random.pick([ABSENT, ABSENT, null, ''])
}

interface KeyPools {
  /** A small pool of ids: most records repeat one. */
  ids: readonly string[]
  /** The natural key (email, slug) each pool id usually carries. */
  homes: readonly string[]
  /** Natural keys no pool id carries: records without id find or create their rows. */
  strays: readonly string[]
  /** A never-seen id, and a never-seen natural key. */
  freshId(): string
  freshKey(): string
}

/**
 * An id and a natural key for a record of a resource that has one: mostly a pool id with its own
 * key (inserted, then updated), else no id (the row is found by its key, or created), a pool id
 * with any key (it moves the row's key, or fails with unique_violation), a new id, or an invalid
 * one.
 */
function idAndKey(random: Random, pools: KeyPools, source: RecordSource): [Cell, string] {
  const k = random.below(pools.ids.length)
  const id = anyCase(random, pools.ids[k] as string)
  const home = pools.homes[k] as string
  return random.weighted<() => [Cell, string]>([
    [58, () => [id, home]],
    [22, () => [absentAs(random, source), random.chance(0.15) ? random.pick(pools.homes) : random.pick(pools.strays)]],
    [8, () => [id, random.pick(pools.homes)]],
    [6, () => [pools.freshId(), random.chance(0.1) ? random.pick(pools.homes) : pools.freshKey()]],
    [2, () => [random.pick(INVALID_UUIDS), home]],
    [source === 'json' ? 1 : 0, () => [12345, home]],
  ])()
}

/**
 * A chain of records, each otherwise valid, where natural keys move between rows: a row changes
 * its key, another takes the freed one, a record without id finds a row by its new key, a row
 * takes back its old key (allowed, or a unique_violation when another took it), a new row changes
 * its key again before an earlier batch could have written it.
 */
function keyChain(random: Random, pools: KeyPools, absent: Cell): [Cell, string][] {
  const [a, b, c] = [random.pick(pools.ids), random.pick(pools.ids), pools.freshId()]
  const [k1, k2, k3, k4] = [
    random.pick(pools.homes),
    random.pick(pools.homes),
    random.pick(pools.strays),
    pools.freshKey(),
  ]
  return random.pick<[Cell, string][]>([
    // a new row changes its key before the database has it
    [
      [c, k4],
      [c, k3],
      [absent, k4],
      [c, k4],
    ],
    [
      [a, k1],
      [a, k2],
      [b, k1],
      [absent, k2],
      [a, k1],
    ],
    [
      [a, k1],
      [b, k2],
      [a, k3],
      [b, k1],
      [a, k2],
      [b, k3],
    ],
    [
      [a, k1],
      [a, k2],
      [a, k1],
      [absent, k2],
      [b, k2],
    ],
  ])
}

function optionalTimestamp(random: Random, source: RecordSource): Cell {
  return random.weighted<() => Cell>([
    [50, () => absentAs(random, source)],
    [48, () => timestamp(random)],
    [2, () => random.pick(INVALID_TIMESTAMPS)],
  ])()
}

/** A required text: usually `text`, sometimes blank or missing (required) or, in JSON, a number. */
function requiredText(random: Random, text: string, source: RecordSource): Cell {
  return random.weighted<() => Cell>([
    [97, () => padded(random, text)],
    [1.5, () => (source === 'csv' ? random.pick(['', '   ']) : random.pick([ABSENT, null, '', '  ']))],
    [source === 'json' ? 1 : 0, () => 42],
  ])()
}

// ---------------------------------------------------------------------------------------------
// Record generators: records as fields → Cell, turned into a file and into the oracle's input

type Draft = Record<string, Cell>

const DOMAINS = ['example.com', 'test.org', 'mail.dev', 'sample.co.uk']
const ROLES = ['admin', 'editor', 'author', 'reader']
const INVALID_EMAILS = ['foo@bar', 'no-at-sign.example.com', 'two@@example.com', 'a b@example.com', 'x@example.c']

function userDraft(random: Random, id: Cell, email: Cell, index: number, source: RecordSource): Draft {
  const csv = source === 'csv'
  return {
    id,
    email,
    name: requiredText(
      random,
      random.pick(['Ada Lovelace', 'Grace "Amazing" Hopper', 'Turing, Alan', 'Zoë']) + index,
      source,
    ),
    role: random.weighted<() => Cell>([
      [95, () => padded(random, random.pick(ROLES))],
      [3, () => random.pick(['manager', 'owner', 'root'])],
      [2, () => requiredText(random, 'reader', source)],
    ])(),
    active: random.weighted<() => Cell>([
      [80, () => (csv ? padded(random, random.pick(['true', 'false', 'TRUE', 'False'])) : random.chance(0.5))],
      [17, () => absentAs(random, source)],
      [3, () => (csv ? random.pick(['yes', '1', 'on']) : random.pick(['true', 1, 'false']))],
    ])(),
    created_at: optionalTimestamp(random, source),
    updated_at: optionalTimestamp(random, source),
  }
}

/**
 * Users: ids and emails from small pools (see idAndKey, keyChain), emails in any case, so that
 * most records repeat an id or an email; each field now and then invalid.
 */
function userRecords(seed: number, count: number, source: RecordSource): Draft[] {
  const random = new Random(seed)
  let fresh = 0
  const pools: KeyPools = {
    ids: Array.from({ length: Math.ceil(count / 8) }, (_, k) => userId(seed, k)),
    homes: Array.from({ length: Math.ceil(count / 8) }, (_, k) => `user.${k}@${random.pick(DOMAINS)}`),
    strays: Array.from({ length: Math.ceil(count / 20) }, (_, k) => `stray.${k}@${random.pick(DOMAINS)}`),
    freshId: () => userId(seed, 100_000 + fresh++),
    freshKey: () => `new.${fresh++}@${random.pick(DOMAINS)}`,
  }
  const email = (text: string) => padded(random, anyCase(random, text))
  const records: Draft[] = []
  while (records.length < count) {
    const index = records.length
    if (random.chance(0.03)) {
      for (const [id, address] of keyChain(random, pools, absentAs(random, source))) {
        records.push({
          ...userDraft(random, id, email(address), index, source),
          name: `Chain ${index}`,
          role: 'editor',
        })
      }
      continue
    }
    const [id, address] = idAndKey(random, pools, source)
    const emailCell = random.weighted<() => Cell>([
      [95, () => email(address)],
      [3, () => random.pick(INVALID_EMAILS)],
      [0.5, () => `${'l'.repeat(60)}@${'d'.repeat(60)}.${'e'.repeat(60)}.${'m'.repeat(60)}.example.com`],
      [1.5, () => requiredText(random, '', source)],
    ])()
    records.push(userDraft(random, id, emailCell, index, source))
  }
  return records.slice(0, count)
}

/** A file of valid users with the given ids, to reference from articles and comments. */
function referencedUsers(ids: readonly string[]): Draft[] {
  return ids.map((id, k) => ({ id, email: `author.${k}@example.com`, name: `Author ${k}`, role: 'author' }))
}

const TITLE_WORDS = ['Bulk', 'Imports', 'Streaming', 'PostgreSQL', 'Batches', 'Upserts', 'Café', 'Zürich']
const SLUG_WORDS = ['bulk', 'imports', 'streaming', 'postgresql', 'batches', 'upserts', 'cafe', 'zurich']
const TAG_NAMES = ['postgres', 'bulk', ' import ', 'csv', 'how-to', 'café', 'machine learning']

function tags(random: Random): Cell {
  return random.weighted<() => Cell>([
    [35, () => random.pick([ABSENT, null, ''])],
    [8, () => []],
    [50, () => Array.from({ length: 1 + random.below(3) }, () => random.pick(TAG_NAMES))],
    [3, () => 'postgres|bulk'],
    [2, () => ['ok', ' ']],
    [2, () => ['ok', 7]],
  ])()
}

/**
 * Articles (NDJSON): ids and slugs from small pools (see idAndKey, keyChain); authors among the
 * referenced users, now and then unknown; drafts with and without published_at, published_at
 * absent, null or empty, so that the stored row decides whether a draft is valid.
 */
function articleRecords(seed: number, count: number, authors: readonly string[]): Draft[] {
  const random = new Random(seed)
  let fresh = 0
  const word = () => random.pick(SLUG_WORDS)
  const pools: KeyPools = {
    ids: Array.from({ length: Math.ceil(count / 8) }, (_, k) => articleId(seed, k)),
    homes: Array.from({ length: Math.ceil(count / 8) }, (_, k) => `${word()}-${k}`),
    strays: Array.from({ length: Math.ceil(count / 20) }, (_, k) => `${word()}-stray-${k}`),
    freshId: () => articleId(seed, 100_000 + fresh++),
    freshKey: () => `${word()}-new-${fresh++}`,
  }
  const draft = (id: Cell, slug: Cell, index: number): Draft => {
    const status = random.weighted<() => Cell>([
      [62, () => padded(random, 'published')],
      [33, () => padded(random, 'draft')],
      [2, () => 'archived'],
      [1.5, () => requiredText(random, '', 'json')],
    ])()
    const isDraft = typeof status === 'string' && status.trim() === 'draft'
    return {
      id,
      slug,
      title: requiredText(random, `${random.pick(TITLE_WORDS)} ${index}`, 'json'),
      body: random.weighted<() => Cell>([
        [96, () => random.pick(['Plain body.', '  Spaces kept.  ', 'Two\nlines', 'Unicode 🚀 ü']) + index],
        [2, () => random.pick([ABSENT, null, '', ' \n '])],
        [1, () => 7],
      ])(),
      author_id: random.weighted<() => Cell>([
        [93, () => anyCase(random, random.pick(authors))],
        [4, () => userId(seed + 1, 500 + random.below(1000))],
        [1, () => random.pick(INVALID_UUIDS)],
        [2, () => requiredText(random, '', 'json')],
      ])(),
      tags: tags(random),
      published_at: random.weighted<() => Cell>([
        [isDraft ? 50 : 30, () => ABSENT],
        [isDraft ? 30 : 10, () => null],
        [5, () => ''],
        [isDraft ? 6 : 53, () => timestamp(random)],
        [2, () => random.pick(INVALID_TIMESTAMPS)],
      ])(),
      status,
    }
  }
  const records: Draft[] = []
  while (records.length < count) {
    const index = records.length
    if (random.chance(0.03)) {
      for (const [id, slug] of keyChain(random, pools, ABSENT)) {
        const step = draft(id, slug, index)
        records.push({ ...step, title: `Chain ${index}`, status: 'published', author_id: random.pick(authors) })
      }
      continue
    }
    const [id, key] = idAndKey(random, pools, 'json')
    const slugCell = random.weighted<() => Cell>([
      [95, () => padded(random, key)],
      [3, () => random.pick(['Bad Slug', 'double--dash', '-lead', 'UPPER'])],
      [2, () => requiredText(random, '', 'json')],
    ])()
    records.push(draft(id, slugCell, index))
  }
  return records.slice(0, count)
}

/** A file of valid articles with the given ids (published, by the given authors). */
function referencedArticles(ids: readonly string[], authors: readonly string[]): Draft[] {
  return ids.map((id, k) => ({
    id,
    slug: `referenced-${k}`,
    title: `Referenced ${k}`,
    body: 'Body.',
    author_id: authors[k % authors.length] as string,
    status: 'published',
    published_at: '2020-02-02T02:02:02Z',
  }))
}

/**
 * Comments (NDJSON): ids from a small pool, now and then missing or invalid; articles and users
 * among the referenced ones, now and then unknown; bodies at and past both limits (10,000
 * characters, counted in code points; 500 words), blank or missing.
 */
function commentRecords(seed: number, count: number, articles: readonly string[], users: readonly string[]): Draft[] {
  const random = new Random(seed)
  const ids = Array.from({ length: Math.ceil(count / 5) }, (_, k) => commentId(seed, k))
  return Array.from({ length: count }, (_, index) => ({
    id: random.weighted<() => Cell>([
      [94, () => anyCase(random, random.pick(ids))],
      [2, () => commentId(seed, 100_000 + index)],
      [2, () => requiredText(random, '', 'json')],
      [2, () => random.pick(INVALID_UUIDS)],
    ])(),
    article_id: random.weighted<() => Cell>([
      [92, () => anyCase(random, random.pick(articles))],
      [6, () => articleId(seed + 1, 500 + random.below(1000))],
      [2, () => random.pick(INVALID_UUIDS)],
    ])(),
    user_id: random.weighted<() => Cell>([
      [92, () => anyCase(random, random.pick(users))],
      [6, () => userId(seed + 2, 500 + random.below(1000))],
      [2, () => requiredText(random, '', 'json')],
    ])(),
    body: random.weighted<() => Cell>([
      [88, () => random.pick(['Great post!', ' Thanks. ', 'Très bien 👍', 'a\nb']) + index],
      [2, () => random.pick([ABSENT, null, '', '   '])],
      [2, () => 'word '.repeat(500)],
      [2, () => 'word '.repeat(501)],
      [2, () => '🚀'.repeat(10_000)],
      [2, () => 'x'.repeat(10_001)],
      [2, () => `${'y'.repeat(9_999)}🚀`],
    ])(),
    created_at: optionalTimestamp(random, 'json'),
  }))
}

// ---------------------------------------------------------------------------------------------
// Files and the oracle's input

const COLUMNS: Record<Resource, readonly string[]> = {
  users: ['id', 'email', 'name', 'role', 'active', 'created_at', 'updated_at'],
  articles: ['id', 'slug', 'title', 'body', 'author_id', 'tags', 'published_at', 'status'],
  comments: ['id', 'article_id', 'user_id', 'body', 'created_at'],
}

interface ImportFile {
  text: string
  filename: string
  /** The records as the oracle reads them: CSV text cells keyed by header, or parsed JSON. */
  records: Record<string, unknown>[]
  source: RecordSource
}

function csvCell(random: Random, value: string): string {
  return /[",\r\n]/.test(value) || random.chance(0.1) ? `"${value.replaceAll('"', '""')}"` : value
}

/** A CSV file: the header in a random order (columns are matched by name), cells quoted or not. */
function csvFile(seed: number, resource: Resource, drafts: readonly Draft[]): ImportFile {
  const random = new Random(seed ^ 0x5f3759df)
  const header = [...COLUMNS[resource]].sort(() => random.next() - 0.5)
  const records = drafts.map((draft) =>
    Object.fromEntries(header.map((column) => [column, draft[column] === ABSENT ? '' : String(draft[column] ?? '')])),
  )
  const lines = records.map((record) => header.map((column) => csvCell(random, record[column] as string)).join(','))
  return { text: `${header.join(',')}\n${lines.join('\n')}\n`, filename: `${resource}.csv`, records, source: 'csv' }
}

function ndjsonFile(resource: Resource, drafts: readonly Draft[]): ImportFile {
  const records = drafts.map((draft) => Object.fromEntries(Object.entries(draft).filter(([, cell]) => cell !== ABSENT)))
  const text = `${records.map((record) => JSON.stringify(record)).join('\n')}\n`
  return { text, filename: `${resource}.ndjson`, records, source: 'json' }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

interface Scenario {
  name: string
  resource: Resource
  seeds: number[]
  /** Files imported first (all valid), then the file under test. */
  files(seed: number): { setup: ImportFile[]; file: ImportFile }
}

const REFERENCED_USERS = (seed: number) => Array.from({ length: 25 }, (_, k) => userId(seed, 900_000 + k))
const REFERENCED_ARTICLES = (seed: number) => Array.from({ length: 25 }, (_, k) => articleId(seed, 900_000 + k))

const scenarios: Scenario[] = [
  {
    name: 'users CSV',
    resource: 'users',
    seeds: [11],
    files: (seed) => ({ setup: [], file: csvFile(seed, 'users', userRecords(seed, 300, 'csv')) }),
  },
  {
    name: 'users NDJSON',
    resource: 'users',
    seeds: [21],
    files: (seed) => ({ setup: [], file: ndjsonFile('users', userRecords(seed, 300, 'json')) }),
  },
  {
    name: 'articles NDJSON',
    resource: 'articles',
    seeds: [31, 32],
    files: (seed) => ({
      setup: [ndjsonFile('users', referencedUsers(REFERENCED_USERS(seed)))],
      file: ndjsonFile('articles', articleRecords(seed, 300, REFERENCED_USERS(seed))),
    }),
  },
  {
    name: 'comments NDJSON',
    resource: 'comments',
    seeds: [41, 42],
    files: (seed) => ({
      setup: [
        ndjsonFile('users', referencedUsers(REFERENCED_USERS(seed))),
        ndjsonFile('articles', referencedArticles(REFERENCED_ARTICLES(seed), REFERENCED_USERS(seed))),
      ],
      file: ndjsonFile('comments', commentRecords(seed, 250, REFERENCED_ARTICLES(seed), REFERENCED_USERS(seed))),
    }),
  },
]

const onlySeed = process.env.DIFFERENTIAL_SEED ? Number(process.env.DIFFERENTIAL_SEED) : undefined

/** The job's errors, all of them, as record number → sorted `field:code` list. */
async function importedFailures(app: FastifyInstance, jobId: string): Promise<Record<string, string[]>> {
  const response = await app.inject({ url: `/api/v1/imports/${jobId}/errors?format=ndjson` })
  return errorCodes(
    response.body
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line)),
  )
}

/** How many errors of each code the oracle expects. */
function codeCounts(outcome: OracleOutcome): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const errors of outcome.failures.values()) for (const { code } of errors) counts[code] = (counts[code] ?? 0) + 1
  return counts
}

async function tables(app: FastifyInstance, resource: Resource, oracle: OracleDatabase) {
  if (resource === 'users') return { expected: oracleUsers(oracle), actual: await databaseUsers(app.sql, oracle) }
  if (resource === 'articles') {
    return { expected: oracleArticles(oracle), actual: await databaseArticles(app.sql, oracle) }
  }
  return { expected: oracleComments(oracle), actual: await databaseComments(app.sql) }
}

async function importFile(app: FastifyInstance, resource: Resource, file: ImportFile) {
  return importAndWait(app, { resource, file: file.text, filename: file.filename })
}

async function checkBatchSize(t: Test, scenario: Scenario, seed: number, batchSize: number) {
  const { setup, file } = scenario.files(seed)
  const oracle = new OracleDatabase()
  const threads = IMPORT_THREADS[batchSize] as string
  const app = await buildTestApp(t, { environment: { BATCH_SIZE: String(batchSize), IMPORT_THREADS: threads } })
  app.jobs.start()
  for (const setupFile of setup) {
    const resource = setupFile.filename.split('.')[0] as Resource
    const setupOutcome = oracle.apply(resource, setupFile.records, setupFile.source)
    const job = await importFile(app, resource, setupFile)
    t.same([job.counters.failed, setupOutcome.counters.failed], [0, 0], `seed ${seed}: the ${resource} set-up is valid`)
  }
  const expected: OracleOutcome = oracle.apply(scenario.resource, file.records, file.source)
  // What the file exercises, for whoever reads the log of a failure (once per seed).
  if (batchSize === BATCH_SIZES[0])
    t.comment(`seed ${seed}: the oracle expects`, expected.counters, codeCounts(expected))
  const job = await importFile(app, scenario.resource, file)
  const context = `seed ${seed}, BATCH_SIZE ${batchSize}, IMPORT_THREADS ${threads}`
  t.equal(job.status, 'completed', `${context}: the job completes`)
  t.same(job.counters, expected.counters, `${context}: counters`)
  const failures = await importedFailures(app, job.id)
  t.same(differences(failureCodes(expected.failures), failures), [], `${context}: failed records and their errors`)
  const { expected: rows, actual } = await tables(app, scenario.resource, oracle)
  t.same(differences(rows, actual), [], `${context}: ${scenario.resource} table`)
}

for (const scenario of scenarios) {
  for (const seed of onlySeed === undefined ? scenario.seeds : [onlySeed]) {
    t.test(`${scenario.name}, seed ${seed}: every batch size gives the one-at-a-time outcome`, async (t) => {
      for (const batchSize of BATCH_SIZES) {
        await t.test(`BATCH_SIZE ${batchSize}`, (t) => checkBatchSize(t, scenario, seed, batchSize))
      }
    })
  }
}

t.test('an article failing several table checks gets one error for each, as the oracle says', async (t) => {
  const [author, unknownAuthor] = [userId(7, 1), userId(7, 2)]
  const [taken, other] = [articleId(7, 1), articleId(7, 2)]
  const users = ndjsonFile('users', referencedUsers([author]))
  const published = {
    title: 'T',
    body: 'B',
    author_id: author,
    status: 'published',
    published_at: '2020-01-01T00:00:00Z',
  }
  const articles = ndjsonFile('articles', [
    { id: taken, slug: 'taken', ...published },
    { id: other, slug: 'other', ...published },
    // The slug is another article's, the author does not exist, and the stored row (other's)
    // keeps its published_at, which a draft must not have.
    { id: other, slug: 'taken', title: 'T', body: 'B', author_id: unknownAuthor, status: 'draft' },
  ])
  const oracle = new OracleDatabase()
  oracle.apply('users', users.records, users.source)
  const expected = oracle.apply('articles', articles.records, articles.source)
  const app = await buildTestApp(t)
  app.jobs.start()
  await importFile(app, 'users', users)
  const job = await importFile(app, 'articles', articles)
  t.same(failureCodes(expected.failures), {
    3: ['author_id:foreign_key_violation', 'published_at:invalid_state', 'slug:unique_violation'],
  })
  t.same(await importedFailures(app, job.id), failureCodes(expected.failures))
})
