// A record-at-a-time oracle of docs/contract.md §1–§3, for differential tests of the batched import.
//
// It is written from docs/contract.md alone and shares no code with app/ or db/: its own validation
// (plain regular expressions, no TypeBox), its own in-memory tables (Maps), and the upsert rules
// applied literally, one record at a time, in file order. What it cannot know — the UUIDs the
// database generates and the moment of now() — it represents by stand-ins (`generated:<n>` ids,
// the `NOW` timestamp), so that tests compare everything else exactly.
//
// Where the contract leaves room, the oracle takes the reading below (written here, so that a
// failing comparison can be judged against it); the differential tests' generators keep clear of
// the finer points (an upper-case `Z`, a role in capitals) that a reasonable reading could decide
// either way.
// - A record is first validated on its own (every failing field reported, one error per field).
//   Only a record that passes is checked against the tables (unique_violation on the natural key,
//   foreign_key_violation per missing reference, invalid_state on the row as it would be
//   stored); those checks report every failing field too.
// - A draft that carries a published_at is an `invalid_state` of the record itself (no table
//   needed), reported with the record's other field errors.
// - A too long email that is otherwise well formed is `too_long`; a malformed one `invalid_format`.
// - A CSV boolean cell other than true/false is `invalid_value`; so is a blank tag. A CSV tags
//   cell that starts with `[` but is not a JSON array of strings is `invalid_format`.
// - Timestamps are `YYYY-MM-DD(T| )HH:MM[:SS[.f{1,6}]]` with `Z`, `±HH:MM`, `±HHMM` or `±HH`, of a real
//   calendar day.

import type { DefaultResourceName } from '../resources/index.ts'

/** The oracle models the service's own resources (its rules are written independently of theirs). */
export type Resource = DefaultResourceName

/** Where records come from: CSV (text cells keyed by header) or JSON (NDJSON lines, JSON arrays). */
export type RecordSource = 'csv' | 'json'

export type ErrorCode =
  | 'required'
  | 'invalid_format'
  | 'invalid_value'
  | 'too_long'
  | 'type_mismatch'
  | 'unique_violation'
  | 'foreign_key_violation'
  | 'invalid_state'

export interface OracleError {
  field: string
  code: ErrorCode
}

/** Stands for a timestamp the database sets with now() at the time of the write. */
export const NOW = 'now'

/** A timestamp in canonical form (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, UTC, microseconds), or NOW. */
export type Timestamp = string

export interface UserRow {
  id: string
  /** Whether the id came from a file (otherwise it is a `generated:<n>` stand-in). */
  idGiven: boolean
  email: string
  name: string
  role: string
  active: boolean
  created_at: Timestamp
  updated_at: Timestamp
}

export interface ArticleRow {
  id: string
  idGiven: boolean
  slug: string
  title: string
  body: string
  author_id: string
  tags: string[]
  published_at: Timestamp | null
  status: string
}

export interface CommentRow {
  id: string
  article_id: string
  user_id: string
  body: string
  created_at: Timestamp
}

export interface OracleCounters {
  processed: number
  inserted: number
  updated: number
  failed: number
}

export interface OracleOutcome {
  counters: OracleCounters
  /** Failed records: 1-based record number → their errors. */
  failures: Map<number, OracleError[]>
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const EMAIL = /^[^\s@"(),:;<>[\]\\]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}$/
const SLUG = /^[a-z0-9]+(-[a-z0-9]+)*$/
const TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?(Z|([+-])(\d{2})(?::?(\d{2}))?)$/
const ROLES = new Set(['admin', 'editor', 'author', 'reader'])
const STATUSES = new Set(['draft', 'published'])
const MAX_EMAIL_LENGTH = 254
const MAX_BODY_CHARACTERS = 10_000
const MAX_BODY_WORDS = 500

/**
 * A timestamp text in canonical form, or undefined when it is not an ISO-8601 timestamp with a
 * zone. Offsets are whole minutes, so the fraction of the second is the same in UTC.
 */
export function canonicalTimestamp(text: string): Timestamp | undefined {
  const match = TIMESTAMP.exec(text)
  if (!match) return undefined
  const [, year, month, day, hour, minute, second = '00', fraction = '', zone, sign, offsetHours, offsetMinutes] = match
  const [y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0] = [year, month, day, hour, minute, second].map(Number)
  if (y < 1 || mo < 1 || mo > 12 || h > 23 || mi > 59 || s > 59) return undefined
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0)
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo - 1] as number
  if (d < 1 || d > days) return undefined
  let offset = 0
  if (zone !== 'Z') {
    const oh = Number(offsetHours)
    const om = Number(offsetMinutes ?? '0')
    if (oh > 15 || om > 59) return undefined
    offset = (sign === '-' ? -1 : 1) * (oh * 60 + om)
  }
  const utc = new Date(0)
  utc.setUTCFullYear(y, mo - 1, d)
  utc.setUTCHours(h, mi - offset, s, 0)
  return `${utc.toISOString().slice(0, 19)}.${fraction.padEnd(6, '0')}Z`
}

/** Length in Unicode code points. */
function codePoints(text: string): number {
  let count = 0
  for (const _ of text) count++
  return count
}

function words(text: string): number {
  return text.split(/\s+/).filter((word) => word !== '').length
}

/** What a field of a record holds after the contract's reading: absent, null, a value, or an error. */
type Read<T> = { kind: 'absent' } | { kind: 'null' } | { kind: 'value'; value: T } | { kind: 'error'; code: ErrorCode }

const ABSENT = { kind: 'absent' } as const
const NULL = { kind: 'null' } as const
const error = (code: ErrorCode) => ({ kind: 'error', code }) as const
const value = <T>(held: T) => ({ kind: 'value', value: held }) as const

/**
 * A text field as the contract reads it: trimmed; empty is absent (null for a nullable field); a JSON
 * null is absent (null for a nullable field); a JSON non-string is a type_mismatch. The caller
 * turns the absence of a required field into a `required` error.
 */
function readText(raw: unknown, options: { nullable?: boolean } = {}): Read<string> {
  if (raw === undefined) return ABSENT
  if (raw === null) return options.nullable ? NULL : ABSENT
  if (typeof raw !== 'string') return error('type_mismatch')
  const text = raw.trim()
  if (text === '') return options.nullable ? NULL : ABSENT
  return value(text)
}

/** Record validation: collects one error per failing field. */
class Checked {
  readonly errors: OracleError[] = []

  fail(field: string, code: ErrorCode): undefined {
    this.errors.push({ field, code })
    return undefined
  }

  /** A required text field, trimmed. */
  required(record: Record<string, unknown>, field: string): string | undefined {
    const read = readText(record[field])
    if (read.kind === 'error') return this.fail(field, read.code)
    if (read.kind !== 'value') return this.fail(field, 'required')
    return read.value
  }

  /** An optional text field, trimmed; undefined when absent. */
  optional(record: Record<string, unknown>, field: string): string | undefined {
    const read = readText(record[field])
    if (read.kind === 'error') return this.fail(field, read.code)
    return read.kind === 'value' ? read.value : undefined
  }

  uuid(field: string, text: string | undefined): string | undefined {
    if (text === undefined) return undefined
    return UUID.test(text) ? text.toLowerCase() : this.fail(field, 'invalid_format')
  }

  timestamp(field: string, text: string | undefined): Timestamp | undefined {
    if (text === undefined) return undefined
    return canonicalTimestamp(text) ?? this.fail(field, 'invalid_format')
  }

  /** A body: required, non-blank, stored as given (not trimmed). */
  body(record: Record<string, unknown>, field: string): string | undefined {
    const raw = record[field]
    if (raw === undefined || raw === null) return this.fail(field, 'required')
    if (typeof raw !== 'string') return this.fail(field, 'type_mismatch')
    if (raw.trim() === '') return this.fail(field, 'required')
    return raw
  }
}

interface UserRecord {
  id?: string
  email: string
  name: string
  role: string
  active?: boolean
  created_at?: Timestamp
  updated_at?: Timestamp
}

function validateUser(record: Record<string, unknown>, source: RecordSource): UserRecord | OracleError[] {
  const check = new Checked()
  const id = check.uuid('id', check.optional(record, 'id'))
  let email = check.required(record, 'email')
  if (email !== undefined) {
    if (!EMAIL.test(email)) email = check.fail('email', 'invalid_format')
    else if (codePoints(email) > MAX_EMAIL_LENGTH) email = check.fail('email', 'too_long')
  }
  const name = check.required(record, 'name')
  let role = check.required(record, 'role')
  if (role !== undefined && !ROLES.has(role)) role = check.fail('role', 'invalid_value')
  let active: boolean | undefined
  const rawActive = record.active
  if (source === 'csv') {
    const text = check.optional(record, 'active')?.toLowerCase()
    if (text === 'true' || text === 'false') active = text === 'true'
    else if (text !== undefined) check.fail('active', 'invalid_value')
  } else if (typeof rawActive === 'boolean') active = rawActive
  else if (
    rawActive !== undefined &&
    rawActive !== null &&
    !(typeof rawActive === 'string' && rawActive.trim() === '')
  ) {
    check.fail('active', 'type_mismatch')
  }
  const created_at = check.timestamp('created_at', check.optional(record, 'created_at'))
  const updated_at = check.timestamp('updated_at', check.optional(record, 'updated_at'))
  if (check.errors.length) return check.errors
  return { id, email: email as string, name: name as string, role: role as string, active, created_at, updated_at }
}

interface ArticleRecord {
  id?: string
  slug: string
  title: string
  body: string
  author_id: string
  tags?: string[]
  /** undefined: absent; null: cleared. */
  published_at?: Timestamp | null
  status: string
}

function readTags(raw: unknown, source: RecordSource): Read<string[]> {
  let list: unknown
  if (source === 'csv') {
    const read = readText(raw)
    if (read.kind !== 'value') return read
    if (read.value.startsWith('[')) {
      try {
        list = JSON.parse(read.value)
      } catch {
        return error('invalid_format')
      }
      if (!Array.isArray(list) || list.some((tag) => typeof tag !== 'string')) return error('invalid_format')
    } else list = read.value.split('|')
  } else {
    if (raw === undefined || raw === null || (typeof raw === 'string' && raw.trim() === '')) return ABSENT
    if (!Array.isArray(raw) || raw.some((tag) => typeof tag !== 'string')) return error('type_mismatch')
    list = raw
  }
  const tags = (list as string[]).map((tag) => tag.trim())
  return tags.includes('') ? error('invalid_value') : value(tags)
}

function validateArticle(record: Record<string, unknown>, source: RecordSource): ArticleRecord | OracleError[] {
  const check = new Checked()
  const id = check.uuid('id', check.optional(record, 'id'))
  let slug = check.required(record, 'slug')
  if (slug !== undefined && !SLUG.test(slug)) slug = check.fail('slug', 'invalid_format')
  const title = check.required(record, 'title')
  const body = check.body(record, 'body')
  const author_id = check.uuid('author_id', check.required(record, 'author_id'))
  const tagsRead = readTags(record.tags, source)
  if (tagsRead.kind === 'error') check.fail('tags', tagsRead.code)
  const publishedRead = readText(record.published_at, { nullable: true })
  let published_at: Timestamp | null | undefined
  if (publishedRead.kind === 'error') check.fail('published_at', publishedRead.code)
  else if (publishedRead.kind === 'null') published_at = null
  else if (publishedRead.kind === 'value') published_at = check.timestamp('published_at', publishedRead.value)
  let status = check.required(record, 'status')
  if (status !== undefined && !STATUSES.has(status)) status = check.fail('status', 'invalid_value')
  if (status === 'draft' && typeof published_at === 'string') check.fail('published_at', 'invalid_state')
  if (check.errors.length) return check.errors
  return {
    id,
    slug: slug as string,
    title: title as string,
    body: body as string,
    author_id: author_id as string,
    tags: tagsRead.kind === 'value' ? tagsRead.value : undefined,
    published_at,
    status: status as string,
  }
}

interface CommentRecord {
  id: string
  article_id: string
  user_id: string
  body: string
  created_at?: Timestamp
}

function validateComment(record: Record<string, unknown>): CommentRecord | OracleError[] {
  const check = new Checked()
  const id = check.uuid('id', check.required(record, 'id'))
  const article_id = check.uuid('article_id', check.required(record, 'article_id'))
  const user_id = check.uuid('user_id', check.required(record, 'user_id'))
  let body = check.body(record, 'body')
  if (body !== undefined && (codePoints(body) > MAX_BODY_CHARACTERS || words(body) > MAX_BODY_WORDS)) {
    body = check.fail('body', 'too_long')
  }
  const created_at = check.timestamp('created_at', check.optional(record, 'created_at'))
  if (check.errors.length) return check.errors
  return {
    id: id as string,
    article_id: article_id as string,
    user_id: user_id as string,
    body: body as string,
    created_at,
  }
}

/** The three tables, in memory, with their natural-key indexes (email case-insensitive). */
export class OracleDatabase {
  readonly users = new Map<string, UserRow>()
  /** lower(email) → user id */
  readonly usersByEmail = new Map<string, string>()
  readonly articles = new Map<string, ArticleRow>()
  /** lower(slug) → article id */
  readonly articlesBySlug = new Map<string, string>()
  readonly comments = new Map<string, CommentRow>()
  #generated = 0

  /** Applies the records of one import file, one at a time, in file order. */
  apply(resource: Resource, records: readonly Record<string, unknown>[], source: RecordSource): OracleOutcome {
    const counters: OracleCounters = { processed: 0, inserted: 0, updated: 0, failed: 0 }
    const failures = new Map<number, OracleError[]>()
    records.forEach((record, index) => {
      const outcome = this.applyOne(resource, record, source)
      counters.processed++
      if (Array.isArray(outcome)) {
        counters.failed++
        failures.set(index + 1, outcome)
      } else counters[outcome]++
    })
    return { counters, failures }
  }

  /** Applies one record: `inserted`, `updated`, or its errors. */
  applyOne(
    resource: Resource,
    record: Record<string, unknown>,
    source: RecordSource,
  ): 'inserted' | 'updated' | OracleError[] {
    if (resource === 'users') {
      const valid = validateUser(record, source)
      return Array.isArray(valid) ? valid : this.#upsertUser(valid)
    }
    if (resource === 'articles') {
      const valid = validateArticle(record, source)
      return Array.isArray(valid) ? valid : this.#upsertArticle(valid)
    }
    const valid = validateComment(record)
    return Array.isArray(valid) ? valid : this.#upsertComment(valid)
  }

  #newId(): string {
    return `generated:${++this.#generated}`
  }

  #upsertUser(record: UserRecord): 'inserted' | 'updated' | OracleError[] {
    const key = record.email.toLowerCase()
    const owner = this.usersByEmail.get(key)
    const target = record.id ?? owner
    if (owner !== undefined && owner !== target) return [{ field: 'email', code: 'unique_violation' }]
    const existing = target === undefined ? undefined : this.users.get(target)
    if (existing) {
      this.usersByEmail.delete(existing.email.toLowerCase())
      existing.email = record.email
      existing.name = record.name
      existing.role = record.role
      if (record.active !== undefined) existing.active = record.active
      if (record.created_at !== undefined) existing.created_at = record.created_at
      existing.updated_at = record.updated_at ?? NOW
      this.usersByEmail.set(key, existing.id)
      return 'updated'
    }
    const id = record.id ?? this.#newId()
    this.users.set(id, {
      id,
      idGiven: record.id !== undefined,
      email: record.email,
      name: record.name,
      role: record.role,
      active: record.active ?? true,
      created_at: record.created_at ?? NOW,
      updated_at: record.updated_at ?? NOW,
    })
    this.usersByEmail.set(key, id)
    return 'inserted'
  }

  #upsertArticle(record: ArticleRecord): 'inserted' | 'updated' | OracleError[] {
    const key = record.slug.toLowerCase()
    const owner = this.articlesBySlug.get(key)
    const target = record.id ?? owner
    const existing = target === undefined ? undefined : this.articles.get(target)
    const errors: OracleError[] = []
    if (owner !== undefined && owner !== target) errors.push({ field: 'slug', code: 'unique_violation' })
    if (!this.users.has(record.author_id)) errors.push({ field: 'author_id', code: 'foreign_key_violation' })
    const published_at = record.published_at !== undefined ? record.published_at : (existing?.published_at ?? null)
    if (record.status === 'draft' && published_at !== null)
      errors.push({ field: 'published_at', code: 'invalid_state' })
    if (errors.length) return errors
    if (existing) {
      this.articlesBySlug.delete(existing.slug.toLowerCase())
      existing.slug = record.slug
      existing.title = record.title
      existing.body = record.body
      existing.author_id = record.author_id
      if (record.tags !== undefined) existing.tags = record.tags
      existing.published_at = published_at
      existing.status = record.status
      this.articlesBySlug.set(key, existing.id)
      return 'updated'
    }
    const id = record.id ?? this.#newId()
    this.articles.set(id, {
      id,
      idGiven: record.id !== undefined,
      slug: record.slug,
      title: record.title,
      body: record.body,
      author_id: record.author_id,
      tags: record.tags ?? [],
      published_at,
      status: record.status,
    })
    this.articlesBySlug.set(key, id)
    return 'inserted'
  }

  #upsertComment(record: CommentRecord): 'inserted' | 'updated' | OracleError[] {
    const errors: OracleError[] = []
    if (!this.articles.has(record.article_id)) errors.push({ field: 'article_id', code: 'foreign_key_violation' })
    if (!this.users.has(record.user_id)) errors.push({ field: 'user_id', code: 'foreign_key_violation' })
    if (errors.length) return errors
    const existing = this.comments.get(record.id)
    if (existing) {
      existing.article_id = record.article_id
      existing.user_id = record.user_id
      existing.body = record.body
      if (record.created_at !== undefined) existing.created_at = record.created_at
      return 'updated'
    }
    this.comments.set(record.id, {
      id: record.id,
      article_id: record.article_id,
      user_id: record.user_id,
      body: record.body,
      created_at: record.created_at ?? NOW,
    })
    return 'inserted'
  }
}

// ---------------------------------------------------------------------------------------------
// Comparing the oracle with the database

/** What a test compares of a user: keyed by lower(email); ids only where a file gave them. */
export interface UserView {
  id: string
  email: string
  name: string
  role: string
  active: boolean
  created_at: Timestamp
  updated_at: Timestamp
}

export interface ArticleView {
  id: string
  title: string
  body: string
  author_id: string
  tags: string[]
  published_at: Timestamp | null
  status: string
}

export interface CommentView {
  article_id: string
  user_id: string
  body: string
  created_at: Timestamp
}

/** Stands for an id the database generated (the oracle's are `generated:<n>`). */
export const GENERATED_ID = 'generated'

/** The oracle's users, keyed by lower(email). */
export function oracleUsers(oracle: OracleDatabase): Record<string, UserView> {
  const views: Record<string, UserView> = {}
  for (const row of oracle.users.values()) {
    const { idGiven: _, ...fields } = row
    views[row.email.toLowerCase()] = { ...fields, id: row.idGiven ? row.id : GENERATED_ID }
  }
  return views
}

/** The oracle's articles, keyed by slug. */
export function oracleArticles(oracle: OracleDatabase): Record<string, ArticleView> {
  const views: Record<string, ArticleView> = {}
  for (const { id, idGiven, slug, ...fields } of oracle.articles.values()) {
    views[slug] = { ...fields, id: idGiven ? id : GENERATED_ID }
  }
  return views
}

/** The oracle's comments, keyed by id. */
export function oracleComments(oracle: OracleDatabase): Record<string, CommentView> {
  const views: Record<string, CommentView> = {}
  for (const { id, ...fields } of oracle.comments.values()) views[id] = fields
  return views
}

/** The ids the oracle got from files: any other id in the database is one it generated. */
function givenIds(oracle: OracleDatabase): Set<string> {
  const ids = new Set<string>()
  for (const row of oracle.users.values()) if (row.idGiven) ids.add(row.id)
  for (const row of oracle.articles.values()) if (row.idGiven) ids.add(row.id)
  return ids
}

/** The part of postgres.js a reader needs. */
export interface Queryable {
  unsafe(query: string): PromiseLike<readonly Record<string, unknown>[]>
}

/**
 * A timestamptz column as the oracle writes it: `NOW` when it was set within the last hour (test
 * data never is: its timestamps are years old), else UTC with microseconds.
 */
function timestampColumn(column: string): string {
  return `case when ${column} > now() - interval '1 hour' then '${NOW}'
    else to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') end as ${column}`
}

/** The users table, keyed by lower(email), ids the files did not give shown as GENERATED_ID. */
export async function databaseUsers(sql: Queryable, oracle: OracleDatabase): Promise<Record<string, UserView>> {
  const given = givenIds(oracle)
  const rows = await sql.unsafe(`select id::text, email, name, role, active,
      ${timestampColumn('created_at')}, ${timestampColumn('updated_at')}
    from users order by id`)
  const views: Record<string, UserView> = {}
  for (const row of rows as unknown as UserView[]) {
    views[row.email.toLowerCase()] = { ...row, id: given.has(row.id) ? row.id : GENERATED_ID }
  }
  return views
}

/** The articles table, keyed by slug. */
export async function databaseArticles(sql: Queryable, oracle: OracleDatabase): Promise<Record<string, ArticleView>> {
  const given = givenIds(oracle)
  const rows = await sql.unsafe(`select id::text, slug, title, body, author_id::text, tags,
      ${timestampColumn('published_at')}, status
    from articles order by id`)
  const views: Record<string, ArticleView> = {}
  for (const { slug, ...row } of rows as unknown as (ArticleView & { slug: string })[]) {
    views[slug] = { ...row, id: given.has(row.id) ? row.id : GENERATED_ID }
  }
  return views
}

/** The comments table, keyed by id. */
export async function databaseComments(sql: Queryable): Promise<Record<string, CommentView>> {
  const rows =
    await sql.unsafe(`select id::text, article_id::text, user_id::text, body, ${timestampColumn('created_at')}
    from comments order by id`)
  const views: Record<string, CommentView> = {}
  for (const { id, ...row } of rows as unknown as (CommentView & { id: string })[]) views[id] = row
  return views
}

/**
 * The differences between two keyed collections, one line each (at most `limit`): what a failed
 * comparison prints instead of two whole tables.
 */
export function differences(
  expected: Readonly<Record<string, unknown>>,
  actual: Readonly<Record<string, unknown>>,
  limit = 20,
): string[] {
  const lines: string[] = []
  for (const key of new Set([...Object.keys(expected), ...Object.keys(actual)])) {
    const want = stableJson(expected[key])
    const got = stableJson(actual[key])
    if (want !== got) lines.push(`${key}: expected ${want ?? 'nothing'}, got ${got ?? 'nothing'}`)
    if (lines.length >= limit) break
  }
  return lines
}

/** JSON with the keys of every object sorted, so that key order never makes a difference. */
function stableJson(value: unknown): string | undefined {
  return JSON.stringify(value, (_key, held: unknown) =>
    held && typeof held === 'object' && !Array.isArray(held)
      ? Object.fromEntries(Object.entries(held).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : held,
  )
}

/**
 * Per-record errors (the service's, from GET /api/v1/imports/:id/errors, or the oracle's) as
 * record number → sorted `field:code` list, the shape tests compare.
 */
export function errorCodes(
  errors: Iterable<{ record: number; field?: string | undefined; code: string }>,
): Record<string, string[]> {
  const codes = new Map<number, string[]>()
  for (const { record, field, code } of errors) {
    const list = codes.get(record) ?? []
    list.push(`${field}:${code}`)
    codes.set(record, list)
  }
  return Object.fromEntries([...codes].map(([record, list]) => [record, list.sort()]))
}

/** An oracle's failures in the shape of errorCodes. */
export function failureCodes(failures: ReadonlyMap<number, readonly OracleError[]>): Record<string, string[]> {
  return errorCodes([...failures].flatMap(([record, errors]) => errors.map((error) => ({ record, ...error }))))
}
