/**
 * Deterministic, streaming generator of import files for the three resources (docs/contract.md
 * §1, §4), with an optional share of defective records like those of the public evaluation data
 * (test/fixtures/README.md). Used by the import benchmarks and by tests.
 *
 *   node bench/generate.ts --resource users --format csv --rows 1000000 --defect-rate 0.01 --out users.csv
 *
 * Every value of row i is a pure function of (seed, resource, i): a stateless counter-based hash
 * (not one sequential PRNG) seeds a small per-row PRNG, so any row, any id and any defect decision
 * can be computed on its own. That is what lets `describeDefects` count exactly without generating
 * the file, lets articles and comments reference users and articles generated in other files, and
 * makes the output byte-identical for the same options whatever the chunking.
 *
 * Cross-file references: an article's author is `userId(seed, k)` for a k < users whose users row
 * is never defective at a defect rate up to REFERENCE_SAFE_RATE (likewise the article and user of
 * a comment). So a valid article references a user that a users file generated with the same
 * seed, at least `users` rows and a defect rate of at most 0.5 inserts with exactly that id.
 *
 * Speed: rows are written straight into a byte buffer (UUIDs, timestamps and numbers as ASCII,
 * pool text encoded once at start-up). Building a string per row and converting chunks to UTF-8
 * ran at about half the rate (a third before other fixes): V8's per-character access to mixed
 * one- and two-byte strings is slow, and so is flattening the rope of a concatenated chunk.
 */
import { createWriteStream } from 'node:fs'
import { Readable, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { parseArgs } from 'node:util'
import { constants, createGzip } from 'node:zlib'
import { type DefaultResourceName, defaultResources } from '../resources/index.ts'

export type Resource = DefaultResourceName
export type Format = 'csv' | 'ndjson' | 'json'

export interface GenerateOptions {
  resource: Resource
  format: Format
  /** Number of data rows, at most MAX_ROWS (the CSV header and the JSON brackets come on top). */
  rows: number
  /** Share of defective rows, 0–1; default 0 (every row valid). */
  defectRate?: number
  /** Any integer 0 … 2^32-1; default 1. Files meant to reference each other share a seed. */
  seed?: number
  /** Users that articles and comments reference (`userId(seed, k)`, k < users); default rows. */
  users?: number
  /** Articles that comments reference (`articleId(seed, k)`, k < articles); default rows. */
  articles?: number
}

/** CSV columns and JSON keys, in export order: the resources' own (resources/). */
export const columns = Object.fromEntries(
  defaultResources.map((resource) => [resource.name, resource.columns]),
) as Record<Resource, readonly string[]>

/**
 * The defect kinds of each resource, each with the docs/contract.md §7 error code that a correct
 * import reports for such a record, or null when the contract accepts it (a user or an article
 * without id is created or updated through its natural key). A defective row carries exactly one defect.
 */
export const defectKinds: Record<Resource, Readonly<Record<string, string | null>>> = {
  users: {
    invalid_email: 'invalid_format',
    duplicate_email: 'unique_violation',
    missing_id: null,
    invalid_role: 'invalid_value',
    invalid_timestamp: 'invalid_format',
  },
  articles: {
    invalid_slug: 'invalid_format',
    duplicate_slug: 'unique_violation',
    unknown_author: 'foreign_key_violation',
    draft_with_published_at: 'invalid_state',
    missing_id: null,
    blank_title: 'required',
  },
  comments: {
    unknown_article: 'foreign_key_violation',
    unknown_user: 'foreign_key_violation',
    body_too_long: 'too_long',
    empty_body: 'required',
    missing_body: 'required',
    missing_id: 'required',
  },
}

/**
 * Rows referenced from other files are picked among those whose defect roll clears this rate, so
 * they stay valid in the referenced file at any defect rate up to it.
 */
export const REFERENCE_SAFE_RATE = 0.5

/** Timestamps advance with the row index; this keeps them within four-digit years. */
export const MAX_ROWS = 100_000_000

// ---------------------------------------------------------------------------------------------
// Counter-based randomness

/** lowbias32 (Chris Wellons): a well-mixing bijection on 32-bit integers. */
function mix32(value: number): number {
  let x = value
  x ^= x >>> 16
  x = Math.imul(x, 0x7feb352d)
  x ^= x >>> 15
  x = Math.imul(x, 0x846ca68b)
  x ^= x >>> 16
  return x >>> 0
}

function labelHash(label: string): number {
  let hash = 0x811c9dc5 // FNV-1a
  for (let i = 0; i < label.length; i++) hash = Math.imul(hash ^ label.charCodeAt(i), 0x01000193)
  return hash >>> 0
}

/** The key of one named stream of numbers for one seed. */
function streamKey(seed: number, label: string): number {
  return mix32((mix32(seed ^ 0x5bd1e995) + labelHash(label)) | 0)
}

/**
 * The number of a stream at an index. For a fixed key it is a bijection of the index (below
 * 2^32), so the first word of a generated UUID, and so the UUID, is unique per index.
 */
function draw(key: number, index: number): number {
  return mix32(key ^ mix32((index + 0x632be5ab) | 0))
}

/** mulberry32, reseeded per row from that row's counter-based draw. */
class RowRandom {
  state = 0
  reseed(value: number): this {
    this.state = value | 0
    return this
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0
    let t = this.state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
  below(count: number): number {
    return this.next() % count
  }
  pick<T>(list: readonly T[]): T {
    return list[this.next() % list.length] as T
  }
}

type UuidKeys = readonly [number, number, number, number]

function uuidKeys(seed: number, label: string): UuidKeys {
  return [0, 1, 2, 3].map((word) => streamKey(seed, `${label}/${word}`)) as unknown as UuidKeys
}

// ---------------------------------------------------------------------------------------------
// Text, encoded once

/** A piece of text with its bytes for each output: UTF-8, CSV inside quotes, JSON inside quotes. */
interface Text {
  readonly string: string
  readonly utf8: Buffer
  readonly csvQuoted: Buffer
  readonly json: Buffer
  /** Contains `"`, `,`, CR or LF: the CSV cell needs quotes. */
  readonly special: boolean
  readonly leadingSpace: boolean
  readonly trailingSpace: boolean
}

/** A cell's text is a sequence of pieces; a number stands for its decimal digits. */
type Piece = Text | number

function encodeText(string: string): Text {
  return {
    string,
    utf8: Buffer.from(string),
    csvQuoted: Buffer.from(string.replaceAll('"', '""')),
    json: Buffer.from(JSON.stringify(string).slice(1, -1)),
    special: /[",\r\n]/.test(string),
    leadingSpace: /^\s/.test(string),
    trailingSpace: /\s$/.test(string),
  }
}

function encodeAll(strings: readonly string[]): Text[] {
  return strings.map(encodeText)
}

const SPACE = encodeText(' ')
const COMMA_SPACE = encodeText(', ')
const DASH = encodeText('-')
const QUOTE = encodeText('"')
const SPACE_QUOTE = encodeText(' "')
const QUOTE_SPACE = encodeText('" ')
const PIPE = encodeText('|')
const COMMA = encodeText(',')
const OPEN_BRACKET = encodeText('[')
const CLOSE_BRACKET = encodeText(']')
const USER = encodeText('user')
const CAPITAL_USER = encodeText('User')
const FIELD_REPORT = encodeText(' — a field report')

const AT_DOMAINS = encodeAll(['@example.com', '@test.org', '@mail.dev', '@sample.net'])
const ROLES = encodeAll(['admin', 'editor', 'author', 'reader'])
const STATUS_PUBLISHED = encodeText('published')
const STATUS_DRAFT = encodeText('draft')
const FIRST_NAMES = encodeAll([
  'Ada',
  'Alan',
  'Grace',
  'Linus',
  'Zoë',
  'José',
  'Søren',
  'Chloé',
  'Björn',
  'Ana',
  'Mei',
  'Hiroshi',
  'Oluwaseun',
  'François',
  'Łukasz',
  'Siobhán',
  'Priya',
  'Ngozi',
  'Jürgen',
  'Camille',
  'Dmitri',
  'Aroha',
  'Mateo',
  'Yuki',
])
const LAST_NAMES = encodeAll([
  'Lovelace',
  'Turing',
  'Hopper',
  'Torvalds',
  'Müller',
  "O'Brien",
  'García',
  'Ødegaard',
  'Kowalski',
  'Dvořák',
  'Nakamura',
  'van der Berg',
  'Smith-Jones',
  'Nguyễn',
  'Ivanova',
  'Okafor',
  'Rossi',
  'Dubois',
  'Kim',
  'Silva',
  'Schmidt',
  'Haddad',
  'Tanaka',
  'Nowak',
])
const NICKNAMES = encodeAll(['Ace', 'Bug', 'Kernel', 'Null'])
/** Title words and their kebab-case slug forms (no digits: a slug's last segment is its row index). */
const TITLE_WORDS: readonly (readonly [Text, Text])[] = [
  ['Bulk', 'bulk'],
  ['Imports', 'imports'],
  ['Exports', 'exports'],
  ['Streaming', 'streaming'],
  ['PostgreSQL', 'postgresql'],
  ['Batches', 'batches'],
  ['Upserts', 'upserts'],
  ['Cursors', 'cursors'],
  ['Back-Pressure', 'back-pressure'],
  ['Café', 'cafe'],
  ['Über', 'uber'],
  ['Naïve', 'naive'],
  ['Résumé', 'resume'],
  ['Zürich', 'zurich'],
  ['Guide', 'guide'],
  ['Notes', 'notes'],
  ['Scaling', 'scaling'],
  ['Indexes', 'indexes'],
  ['Queues', 'queues'],
  ['Workers', 'workers'],
  ['Schemas', 'schemas'],
  ['Fast', 'fast'],
  ['Safe', 'safe'],
  ['Practical', 'practical'],
].map(([title, slug]) => [encodeText(title as string), encodeText(slug as string)] as const)
const SENTENCES = encodeAll([
  'Bulk imports move millions of rows, one batch at a time.',
  'The parser streams the file, so memory stays flat.',
  'She said "ship it" and went home.',
  'Crème brûlée, naïve cafés and Zürich façades.',
  'Unicode check: 日本語のテキスト, 한국어, Ελληνικά and emoji 🚀🎉.',
  'Back-pressure keeps the producer honest.',
  'Indexes help reads, hurt writes, and cost disk.',
  'Numbers like 1,000,000 need quoting in CSV.',
  "Apostrophes aren't special in CSV, but they are in SQL.",
  'A list:\n- first item\n- second item',
  'Backslashes \\ and slashes / survive JSON escaping.',
  'Tabs\tand semicolons; pipes | and brackets [x] are plain text here.',
  'The "quoted, comma" case is the one that breaks naive splitters.',
  'Short.',
])
const SENTENCE_SEPARATORS = encodeAll([' ', ' ', ' ', '\n', '\n\n'])
const TAG_NAMES = [
  'postgres',
  'bulk',
  'import',
  'export',
  'csv',
  'ndjson',
  'json',
  'performance',
  'streaming',
  'how-to',
  'release-notes',
  'café',
  'machine learning',
  'data',
  'ops',
]
const TAGS = encodeAll(TAG_NAMES)
/** Each tag as a JSON string literal, for CSV cells that hold a JSON array. */
const TAG_LITERALS = encodeAll(TAG_NAMES.map((tag) => JSON.stringify(tag)))
const COMMENT_WORD_STRINGS = [
  'great',
  'post',
  'thanks',
  'I',
  'agree',
  'this',
  'helped',
  'a',
  'lot',
  'nice',
  'write-up',
  'très',
  'bien',
  'naïve',
  'question',
  'about',
  'batching',
  'why',
  'not',
  'COPY',
  'ありがとう',
  '👍',
  'really',
  'useful',
  'clear',
  'and',
  'concise',
]
const COMMENT_WORDS = encodeAll(COMMENT_WORD_STRINGS)
const CAPITALIZED_COMMENT_WORDS = encodeAll(
  COMMENT_WORD_STRINGS.map((word) => word.charAt(0).toUpperCase() + word.slice(1)),
)
const COMMENT_ENDINGS = encodeAll(['.', '.', '!', '?'])

const INVALID_ROLES = encodeAll(['manager', 'owner', 'guest', 'superuser'])
const INVALID_TIMESTAMPS = encodeAll([
  '2024-13-01T00:00:00Z',
  '2024-02-30T12:00:00Z',
  '2024-01-01T25:00:00Z',
  'not-a-date',
  '2024-01-01T00:00:00', // no zone: docs/contract.md §2 requires one
  '01/02/2024 10:00',
  '2024-01-01T00:00:00.1234567Z', // seven fractional digits: docs/contract.md §2 allows six
])
const BLANK_VALUES = encodeAll(['', '   '])
/** The longest valid comment body is 10,000 characters; too-long bodies stay under 500 words. */
const LONG_WORD = 'supercalifragilisticexpialidocious '

// ---------------------------------------------------------------------------------------------
// Bytes

/** Bytes generated per read() call: big enough to amortise, small enough to stream. */
const CHUNK_BYTES = 64 * 1024
const HEX_DIGITS = Buffer.from('0123456789abcdef')
const BASE_SECONDS = Date.UTC(2024, 0, 1) / 1000
/** 'YYYY-MM-DDT' by day number since 1970. */
const datePrefixes = new Map<number, Buffer>()

function datePrefix(day: number): Buffer {
  let prefix = datePrefixes.get(day)
  if (prefix === undefined) {
    prefix = Buffer.from(new Date(day * 86_400_000).toISOString().slice(0, 11))
    datePrefixes.set(day, prefix)
  }
  return prefix
}

/** Writes `count` hex digits of the low bits of `value` at `at`; returns the next offset. */
function writeHex(bytes: Buffer, at: number, value: number, count: number): number {
  for (let digit = count - 1; digit >= 0; digit--) bytes[at++] = HEX_DIGITS[(value >>> (digit * 4)) & 15] as number
  return at
}

/** The bytes of the chunk being generated, with writers for the ASCII values of rows. */
class ChunkBuilder {
  bytes: Buffer
  length = 0

  constructor(capacity = CHUNK_BYTES * 2) {
    this.bytes = Buffer.allocUnsafe(capacity)
  }

  /** Makes room for `count` more bytes. */
  reserve(count: number): void {
    if (this.length + count <= this.bytes.length) return
    const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.length + count))
    this.bytes.copy(grown, 0, 0, this.length)
    this.bytes = grown
  }

  byte(value: number): void {
    this.reserve(1)
    this.bytes[this.length++] = value
  }

  append(source: Buffer): void {
    const count = source.length
    this.reserve(count)
    if (count > 32) {
      this.bytes.set(source, this.length)
      this.length += count
      return
    }
    const bytes = this.bytes
    let at = this.length
    for (let i = 0; i < count; i++) bytes[at++] = source[i] as number
    this.length = at
  }

  /** Decimal digits of an integer from 0 to 2^31-1 (all our numbers: row indexes, fractions). */
  integer(value: number): void {
    let digits = 1
    for (let rest = value; rest >= 10; rest = (rest / 10) | 0) digits++
    this.padded(value, digits)
  }

  /** The last `digits` decimal digits of an integer from 0 to 2^31-1, zero-padded. */
  padded(value: number, digits: number): void {
    this.reserve(digits)
    const bytes = this.bytes
    let rest = value | 0
    for (let at = this.length + digits - 1; at >= this.length; at--) {
      bytes[at] = 48 + (rest % 10)
      rest = (rest / 10) | 0
    }
    this.length += digits
  }

  /** A version-4-shaped, lower-case UUID (RFC 9562 variant bits), unique per index for one key set. */
  uuid(keys: UuidKeys, index: number): void {
    const time = draw(keys[1], index)
    const clock = draw(keys[2], index)
    this.reserve(36)
    const bytes = this.bytes
    let at = writeHex(bytes, this.length, draw(keys[0], index), 8)
    bytes[at++] = 45
    at = writeHex(bytes, at, time >>> 16, 4)
    bytes[at++] = 45
    at = writeHex(bytes, at, (time & 0x0fff) | 0x4000, 4)
    bytes[at++] = 45
    at = writeHex(bytes, at, ((clock >>> 16) & 0x3fff) | 0x8000, 4)
    bytes[at++] = 45
    at = writeHex(bytes, at, clock, 4)
    this.length = writeHex(bytes, at, draw(keys[3], index), 8)
  }

  /**
   * An ISO-8601 UTC timestamp for whole `seconds` since 1970; by `roll`, a quarter carry
   * microseconds, an eighth milliseconds, the rest whole seconds.
   */
  timestamp(seconds: number, roll: number): void {
    const day = Math.floor(seconds / 86_400)
    const second = seconds - day * 86_400
    this.append(datePrefix(day))
    this.padded(second / 3600, 2)
    this.byte(58)
    this.padded(((second / 60) | 0) % 60, 2)
    this.byte(58)
    this.padded(second % 60, 2)
    const style = roll & 7
    if (style < 2) {
      this.byte(46)
      this.padded(roll >>> 3, 6)
    } else if (style === 2) {
      this.byte(46)
      this.padded(roll >>> 3, 3)
    }
    this.byte(90)
  }

  /** A copy of the bytes so far; the builder starts over, reusing its buffer. */
  take(): Buffer {
    const chunk = Buffer.allocUnsafe(this.length)
    this.bytes.copy(chunk, 0, 0, this.length)
    this.length = 0
    return chunk
  }
}

/** Renders a string the way the generator writes it (for the exported id functions). */
function render(write: (out: ChunkBuilder) => void): string {
  const out = new ChunkBuilder(64)
  write(out)
  return out.bytes.toString('latin1', 0, out.length)
}

// ---------------------------------------------------------------------------------------------
// Sinks: a row writer emits its fields in column order; the sink encodes them for one format.

interface RowSink {
  beginRow(): void
  endRow(last: boolean): void
  /** An absent value: an empty CSV cell, a missing JSON key. */
  absent(): void
  /** null: an empty CSV cell, a JSON null. */
  nullValue(): void
  boolean(value: boolean): void
  uuid(keys: UuidKeys, index: number): void
  timestamp(seconds: number, roll: number): void
  text(pieces: readonly Piece[]): void
  /** Tags by index into TAGS: CSV `a|b` or, with csvAsJson, a JSON array literal; JSON an array. */
  tags(tags: readonly number[], csvAsJson: boolean): void
}

const TRUE = Buffer.from('true')
const FALSE = Buffer.from('false')
const NULL = Buffer.from('null')

function isText(piece: Piece | undefined): piece is Text {
  return typeof piece === 'object'
}

/** RFC 4180 CSV; cells are quoted when they must be, and when they start or end with whitespace. */
class CsvSink implements RowSink {
  out: ChunkBuilder
  column = 0
  constructor(out: ChunkBuilder) {
    this.out = out
  }
  beginRow(): void {
    this.column = 0
  }
  endRow(): void {
    this.out.byte(10)
  }
  separator(): void {
    if (this.column++ > 0) this.out.byte(44)
  }
  absent(): void {
    this.separator()
  }
  nullValue(): void {
    this.separator()
  }
  boolean(value: boolean): void {
    this.separator()
    this.out.append(value ? TRUE : FALSE)
  }
  uuid(keys: UuidKeys, index: number): void {
    this.separator()
    this.out.uuid(keys, index)
  }
  timestamp(seconds: number, roll: number): void {
    this.separator()
    this.out.timestamp(seconds, roll)
  }
  text(pieces: readonly Piece[]): void {
    this.separator()
    const first = pieces[0]
    const last = pieces[pieces.length - 1]
    let quoted = (isText(first) && first.leadingSpace) || (isText(last) && last.trailingSpace)
    for (let i = 0; i < pieces.length && !quoted; i++) {
      const piece = pieces[i]
      if (isText(piece) && piece.special) quoted = true
    }
    const out = this.out
    if (quoted) out.byte(34)
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i] as Piece
      if (typeof piece === 'number') out.integer(piece)
      else out.append(quoted ? piece.csvQuoted : piece.utf8)
    }
    if (quoted) out.byte(34)
  }
  tags(tags: readonly number[], csvAsJson: boolean): void {
    if (tags.length === 0) {
      this.absent() // absent means []
      return
    }
    const pieces: Piece[] = csvAsJson ? [OPEN_BRACKET] : []
    for (let i = 0; i < tags.length; i++) {
      if (i > 0) pieces.push(csvAsJson ? COMMA : PIPE)
      pieces.push((csvAsJson ? TAG_LITERALS : TAGS)[tags[i] as number] as Text)
    }
    if (csvAsJson) pieces.push(CLOSE_BRACKET)
    this.text(pieces)
  }
}

/** One JSON object per row with the keys in column order; `inArray` adds the commas of a JSON array. */
class JsonSink implements RowSink {
  out: ChunkBuilder
  keys: Buffer[]
  inArray: boolean
  column = 0
  first = true
  constructor(out: ChunkBuilder, names: readonly string[], inArray: boolean) {
    this.out = out
    this.keys = names.map((name) => Buffer.from(`${JSON.stringify(name)}:`))
    this.inArray = inArray
  }
  beginRow(): void {
    this.column = 0
    this.first = true
    this.out.byte(123)
  }
  endRow(last: boolean): void {
    this.out.byte(125)
    if (this.inArray && !last) this.out.byte(44)
    this.out.byte(10)
  }
  key(): void {
    if (!this.first) this.out.byte(44)
    this.first = false
    this.out.append(this.keys[this.column++] as Buffer)
  }
  absent(): void {
    this.column++
  }
  nullValue(): void {
    this.key()
    this.out.append(NULL)
  }
  boolean(value: boolean): void {
    this.key()
    this.out.append(value ? TRUE : FALSE)
  }
  uuid(keys: UuidKeys, index: number): void {
    this.key()
    this.out.byte(34)
    this.out.uuid(keys, index)
    this.out.byte(34)
  }
  timestamp(seconds: number, roll: number): void {
    this.key()
    this.out.byte(34)
    this.out.timestamp(seconds, roll)
    this.out.byte(34)
  }
  text(pieces: readonly Piece[]): void {
    this.key()
    const out = this.out
    out.byte(34)
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i] as Piece
      if (typeof piece === 'number') out.integer(piece)
      else out.append(piece.json)
    }
    out.byte(34)
  }
  tags(tags: readonly number[]): void {
    this.key()
    const out = this.out
    out.byte(91)
    for (let i = 0; i < tags.length; i++) {
      if (i > 0) out.byte(44)
      out.append((TAG_LITERALS[tags[i] as number] as Text).utf8)
    }
    out.byte(93)
  }
}

// ---------------------------------------------------------------------------------------------
// Plans: validated options, the keys of every stream a resource uses, and the defect decisions

interface Plan {
  resource: Resource
  format: Format
  rows: number
  seed: number
  users: number
  articles: number
  /** A row is defective when its defect roll is below this (rate × 2^32). */
  threshold: number
  kinds: readonly string[]
  duplicateKind: number
  defectKey: number
  kindKey: number
  sourceKey: number
  contentKey: number
  domainKey: number
  titleKey: number
  referenceKey: number
  secondReferenceKey: number
  idKeys: UuidKeys
  ghostKeys: UuidKeys
  secondGhostKeys: UuidKeys
  userIdKeys: UuidKeys
  articleIdKeys: UuidKeys
  userDefectKey: number
  articleDefectKey: number
  random: RowRandom
  scratch: RowRandom
}

const RESOURCES: readonly Resource[] = defaultResources.map((resource) => resource.name)
const FORMATS: readonly Format[] = ['csv', 'ndjson', 'json']
const SAFE_THRESHOLD = REFERENCE_SAFE_RATE * 2 ** 32

function isUint32(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0xffffffff
}

function makePlan(options: GenerateOptions): Plan {
  const { resource, format, rows, defectRate = 0, seed = 1 } = options
  if (!RESOURCES.includes(resource)) throw new RangeError(`resource must be one of ${RESOURCES.join(', ')}`)
  if (!FORMATS.includes(format)) throw new RangeError(`format must be one of ${FORMATS.join(', ')}`)
  if (!Number.isInteger(rows) || rows < 0 || rows > MAX_ROWS) {
    throw new RangeError(`rows must be an integer from 0 to ${MAX_ROWS}, got ${rows}`)
  }
  if (typeof defectRate !== 'number' || !(defectRate >= 0 && defectRate <= 1)) {
    throw new RangeError(`defectRate must be a number from 0 to 1, got ${defectRate}`)
  }
  if (!isUint32(seed)) throw new RangeError(`seed must be an integer from 0 to 2^32-1, got ${seed}`)
  const users = options.users ?? rows
  const articles = options.articles ?? rows
  if (!isUint32(users)) throw new RangeError(`users must be an integer from 0 to 2^32-1, got ${users}`)
  if (!isUint32(articles)) throw new RangeError(`articles must be an integer from 0 to 2^32-1, got ${articles}`)
  if (rows > 0 && resource !== 'users' && users === 0) throw new RangeError(`${resource} need users >= 1`)
  if (rows > 0 && resource === 'comments' && articles === 0) throw new RangeError('comments need articles >= 1')
  const kinds = Object.keys(defectKinds[resource])
  return {
    resource,
    format,
    rows,
    seed,
    users,
    articles,
    threshold: defectRate * 2 ** 32,
    kinds,
    duplicateKind: kinds.findIndex((kind) => kind.startsWith('duplicate_')),
    defectKey: streamKey(seed, `${resource}/defect`),
    kindKey: streamKey(seed, `${resource}/kind`),
    sourceKey: streamKey(seed, `${resource}/duplicate-source`),
    contentKey: streamKey(seed, `${resource}/content`),
    domainKey: streamKey(seed, `${resource}/domain`),
    titleKey: streamKey(seed, `${resource}/title`),
    referenceKey: streamKey(seed, `${resource}/reference`),
    secondReferenceKey: streamKey(seed, `${resource}/second-reference`),
    idKeys: uuidKeys(seed, `${resource}/id`),
    ghostKeys: uuidKeys(seed, `${resource}/ghost`),
    secondGhostKeys: uuidKeys(seed, `${resource}/second-ghost`),
    userIdKeys: uuidKeys(seed, 'users/id'),
    articleIdKeys: uuidKeys(seed, 'articles/id'),
    userDefectKey: streamKey(seed, 'users/defect'),
    articleDefectKey: streamKey(seed, 'articles/defect'),
    random: new RowRandom(),
    scratch: new RowRandom(),
  }
}

function isDefective(plan: Plan, index: number): boolean {
  return draw(plan.defectKey, index) < plan.threshold
}

/**
 * The valid earlier row whose natural key a duplicate at `index` reuses, or -1. Half the
 * duplicates look back at most 50 rows (same batch), half up to 100,000 (an earlier batch).
 */
function duplicateSource(plan: Plan, index: number): number {
  if (index === 0) return -1
  const roll = draw(plan.sourceKey, index)
  const span = roll & 1 ? 50 : 100_000
  let candidate = index - 1 - ((roll >>> 1) % Math.min(index, span))
  for (let step = 0; step < 64 && candidate >= 0; step++, candidate--) {
    if (!isDefective(plan, candidate)) return candidate
  }
  return -1
}

/** The defect kind (index into plan.kinds) of a row, or -1 for a valid row. */
function defectOf(plan: Plan, index: number): number {
  if (!isDefective(plan, index)) return -1
  const kind = draw(plan.kindKey, index) % plan.kinds.length
  // No valid earlier row to duplicate (the first row, or a long run of defects): the next kind.
  if (kind === plan.duplicateKind && duplicateSource(plan, index) < 0) return (kind + 1) % plan.kinds.length
  return kind
}

/** The defect kind's name of a row, or undefined for a valid row. */
function defectKind(plan: Plan, index: number): string | undefined {
  const kind = defectOf(plan, index)
  // Not plan.kinds[-1]: a negative index is a slow dictionary lookup, and this runs per row.
  return kind < 0 ? undefined : plan.kinds[kind]
}

/** A referenced row below `count` that stays valid in its own file up to REFERENCE_SAFE_RATE. */
function pickReference(referenceKey: number, index: number, count: number, targetDefectKey: number): number {
  const start = draw(referenceKey, index) % count
  const tries = Math.min(count, 64)
  for (let step = 0; step < tries; step++) {
    const candidate = (start + step) % count
    if (draw(targetDefectKey, candidate) >= SAFE_THRESHOLD) return candidate
  }
  return start
}

// ---------------------------------------------------------------------------------------------
// Rows. Each writer draws all its random numbers first, in a fixed order, so a defective row
// differs from the valid row it would have been only in its defective field.

function emailPieces(plan: Plan, index: number, capital: boolean): Piece[] {
  return [capital ? CAPITAL_USER : USER, index, AT_DOMAINS[draw(plan.domainKey, index) & 3] as Text]
}

function personName(random: RowRandom): Piece[] {
  const first = random.pick(FIRST_NAMES)
  const last = random.pick(LAST_NAMES)
  const style = random.below(64)
  if (style < 2) return [last, COMMA_SPACE, first]
  if (style === 2) return [first, SPACE_QUOTE, random.pick(NICKNAMES), QUOTE_SPACE, last]
  return [first, SPACE, last]
}

function invalidEmail(index: number, variant: number): string {
  switch (variant % 5) {
    case 0:
      return 'foo@bar'
    case 1:
      return `user${index}@example`
    case 2:
      return `user${index}.example.com`
    case 3:
      return `user${index}@@example.com`
    default:
      return `user ${index}@example.com`
  }
}

function writeUser(plan: Plan, index: number, sink: RowSink): void {
  const random = plan.random.reseed(draw(plan.contentKey, index))
  const kind = defectKind(plan, index)
  const name = personName(random)
  const role = random.pick(ROLES)
  const active = random.below(5) !== 0
  const created = BASE_SECONDS + index * 30 + random.below(30)
  const createdRoll = random.next()
  const updated = created + random.below(90 * 86_400)
  const updatedRoll = random.next()
  const variant = random.next()

  if (kind === 'missing_id') sink.absent()
  else sink.uuid(plan.idKeys, index)
  if (kind === 'invalid_email') sink.text([encodeText(invalidEmail(index, variant))])
  // Uniqueness is case-insensitive: half the duplicates differ from their source in case.
  else if (kind === 'duplicate_email') sink.text(emailPieces(plan, duplicateSource(plan, index), (variant & 1) === 1))
  else sink.text(emailPieces(plan, index, false))
  sink.text(name)
  sink.text([kind === 'invalid_role' ? (INVALID_ROLES[variant % INVALID_ROLES.length] as Text) : role])
  sink.boolean(active)
  const badTimestamp =
    kind === 'invalid_timestamp' ? (INVALID_TIMESTAMPS[variant % INVALID_TIMESTAMPS.length] as Text) : undefined
  if (badTimestamp && variant & 8) sink.text([badTimestamp])
  else sink.timestamp(created, createdRoll)
  if (badTimestamp && !(variant & 8)) sink.text([badTimestamp])
  else sink.timestamp(updated, updatedRoll)
}

/** The title words of an article; a stream of their own, so that a duplicate can recompute the slug. */
function titleWords(plan: Plan, index: number): (readonly [Text, Text])[] {
  const random = plan.scratch.reseed(draw(plan.titleKey, index))
  const count = 2 + random.below(4)
  const words: (readonly [Text, Text])[] = []
  for (let i = 0; i < count; i++) words.push(random.pick(TITLE_WORDS))
  return words
}

function slugPieces(plan: Plan, index: number): Piece[] {
  const pieces: Piece[] = []
  for (const word of titleWords(plan, index)) pieces.push(word[1], DASH)
  pieces.push(index)
  return pieces
}

function invalidSlug(words: readonly (readonly [Text, Text])[], index: number, variant: number): string {
  const slugWords = words.map((word) => word[1].string)
  const kebab = slugWords.join('-')
  switch (variant % 7) {
    case 0:
      return `${slugWords.join('_')}_${index}`
    case 1:
      return `${words.map((word) => word[0].string).join('-')}-${index}` // capitals, maybe accents
    case 2:
      return `${kebab}--${index}`
    case 3:
      return `-${kebab}-${index}`
    case 4:
      return `${kebab}-${index}-`
    case 5:
      return `${slugWords.join(' ')} ${index}`
    default:
      return `café-${kebab}-${index}`
  }
}

function articleTitle(words: readonly (readonly [Text, Text])[], style: number): Piece[] {
  const pieces: Piece[] = style === 1 ? [QUOTE, words[0]?.[0] as Text, QUOTE] : [words[0]?.[0] as Text]
  for (let i = 1; i < words.length; i++)
    pieces.push(i === 1 && style === 0 ? COMMA_SPACE : SPACE, words[i]?.[0] as Text)
  if (style === 2) pieces.push(FIELD_REPORT)
  return pieces
}

function articleBody(random: RowRandom): Piece[] {
  const pieces: Piece[] = [random.pick(SENTENCES)]
  const count = random.below(4)
  for (let i = 0; i < count; i++) pieces.push(random.pick(SENTENCE_SEPARATORS), random.pick(SENTENCES))
  return pieces
}

function articleTags(random: RowRandom): number[] {
  const tags: number[] = []
  const count = random.below(4)
  for (let i = 0; i < count; i++) {
    const tag = random.below(TAGS.length)
    if (!tags.includes(tag)) tags.push(tag)
  }
  return tags
}

function writeArticle(plan: Plan, index: number, sink: RowSink): void {
  const words = titleWords(plan, index)
  const random = plan.random.reseed(draw(plan.contentKey, index))
  const kind = defectKind(plan, index)
  const title = articleTitle(words, random.below(16))
  const body = articleBody(random)
  const tags = articleTags(random)
  const tagsAsJson = random.below(4) === 0 // CSV only: a JSON array literal instead of a|b
  const published = random.below(10) < 7
  const publishedAt = BASE_SECONDS + index * 60 + random.below(60)
  const publishedRoll = random.next()
  const variant = random.next()

  if (kind === 'missing_id') sink.absent()
  else sink.uuid(plan.idKeys, index)
  if (kind === 'invalid_slug') sink.text([encodeText(invalidSlug(words, index, variant))])
  else if (kind === 'duplicate_slug') sink.text(slugPieces(plan, duplicateSource(plan, index)))
  else sink.text(slugPieces(plan, index))
  sink.text(kind === 'blank_title' ? [BLANK_VALUES[variant & 1] as Text] : title)
  sink.text(body)
  if (kind === 'unknown_author') sink.uuid(plan.ghostKeys, index)
  else sink.uuid(plan.userIdKeys, pickReference(plan.referenceKey, index, plan.users, plan.userDefectKey))
  sink.tags(tags, tagsAsJson)
  if (published || kind === 'draft_with_published_at') sink.timestamp(publishedAt, publishedRoll)
  else sink.nullValue()
  sink.text([published && kind !== 'draft_with_published_at' ? STATUS_PUBLISHED : STATUS_DRAFT])
}

function commentBody(random: RowRandom): Piece[] {
  const count = 3 + random.below(18)
  const pieces: Piece[] = [random.pick(CAPITALIZED_COMMENT_WORDS)]
  for (let i = 1; i < count; i++) {
    const word = random.pick(COMMENT_WORDS)
    const style = random.below(16)
    if (style === 0) pieces.push(COMMA_SPACE, word)
    else if (style === 1) pieces.push(SPACE_QUOTE, word, QUOTE)
    else pieces.push(SPACE, word)
  }
  pieces.push(random.pick(COMMENT_ENDINGS))
  return pieces
}

function tooLongBody(variant: number): string {
  const length = 10_001 + (variant % 2000)
  return `${LONG_WORD.repeat(Math.ceil(length / LONG_WORD.length)).slice(0, length - 1)}.`
}

function writeComment(plan: Plan, index: number, sink: RowSink): void {
  const random = plan.random.reseed(draw(plan.contentKey, index))
  const kind = defectKind(plan, index)
  const body = commentBody(random)
  const created = BASE_SECONDS + index * 20 + random.below(20)
  const createdRoll = random.next()
  const variant = random.next()

  if (kind === 'missing_id') sink.absent()
  else sink.uuid(plan.idKeys, index)
  if (kind === 'unknown_article') sink.uuid(plan.ghostKeys, index)
  else sink.uuid(plan.articleIdKeys, pickReference(plan.referenceKey, index, plan.articles, plan.articleDefectKey))
  if (kind === 'unknown_user') sink.uuid(plan.secondGhostKeys, index)
  else sink.uuid(plan.userIdKeys, pickReference(plan.secondReferenceKey, index, plan.users, plan.userDefectKey))
  if (kind === 'body_too_long') sink.text([encodeText(tooLongBody(variant))])
  else if (kind === 'empty_body') sink.text([BLANK_VALUES[variant & 1] as Text])
  else if (kind === 'missing_body') sink.absent()
  else sink.text(body)
  sink.timestamp(created, createdRoll)
}

const ROW_WRITERS: Record<Resource, (plan: Plan, index: number, sink: RowSink) => void> = {
  users: writeUser,
  articles: writeArticle,
  comments: writeComment,
}

// ---------------------------------------------------------------------------------------------
// API

/**
 * The whole file as a byte stream, generated on demand: rows are produced only when the
 * consumer reads, so memory stays flat whatever the size. Throws RangeError on invalid options.
 */
export function generate(options: GenerateOptions): Readable {
  const plan = makePlan(options)
  const writeRow = ROW_WRITERS[plan.resource]
  const names = columns[plan.resource]
  const out = new ChunkBuilder()
  const sink = plan.format === 'csv' ? new CsvSink(out) : new JsonSink(out, names, plan.format === 'json')
  const { format, rows } = plan
  let index = 0
  if (format === 'csv') out.append(Buffer.from(`${names.join(',')}\n`))
  else if (format === 'json') out.append(Buffer.from('[\n'))
  return new Readable({
    highWaterMark: CHUNK_BYTES,
    read() {
      while (index < rows && out.length < CHUNK_BYTES) {
        sink.beginRow()
        writeRow(plan, index, sink)
        index++
        sink.endRow(index === rows)
      }
      if (index >= rows && format === 'json') out.append(Buffer.from(']\n'))
      if (out.length > 0) this.push(out.take())
      if (index >= rows) this.push(null)
    },
  })
}

/**
 * How many rows of each defect kind the file for these options contains: exact, from the same
 * per-row decisions as `generate`, without building the rows. Every kind of the resource is
 * listed (zero when absent); a row carries at most one defect.
 */
export function describeDefects(options: GenerateOptions): Record<string, number> {
  const plan = makePlan(options)
  const counts: Record<string, number> = Object.fromEntries(plan.kinds.map((kind) => [kind, 0]))
  if (plan.threshold === 0) return counts
  for (let index = 0; index < plan.rows; index++) {
    const kind = defectKind(plan, index)
    if (kind !== undefined) counts[kind] = (counts[kind] ?? 0) + 1
  }
  return counts
}

const idKeyCache = new Map<string, UuidKeys>()

function idOf(resource: Resource, seed: number, index: number): string {
  if (!isUint32(seed)) throw new RangeError(`seed must be an integer from 0 to 2^32-1, got ${seed}`)
  if (!isUint32(index)) throw new RangeError(`index must be an integer from 0 to 2^32-1, got ${index}`)
  const cacheKey = `${resource}/${seed}`
  let keys = idKeyCache.get(cacheKey)
  if (!keys) {
    keys = uuidKeys(seed, `${resource}/id`)
    idKeyCache.set(cacheKey, keys)
  }
  const resolved = keys
  return render((out) => out.uuid(resolved, index))
}

/** The id of users row `index` generated with `seed` (the row carries it unless it is a missing-id defect). */
export function userId(seed: number, index: number): string {
  return idOf('users', seed, index)
}

/** The id of articles row `index` generated with `seed`. */
export function articleId(seed: number, index: number): string {
  return idOf('articles', seed, index)
}

/** The id of comments row `index` generated with `seed`. */
export function commentId(seed: number, index: number): string {
  return idOf('comments', seed, index)
}

// ---------------------------------------------------------------------------------------------
// Command line

const USAGE = `usage: node bench/generate.ts --resource users|articles|comments --format csv|ndjson|json --rows N
         [--defect-rate 0.01] [--seed 1] [--users N] [--articles N] [--gzip] [--out FILE] [--describe]

Writes the file to FILE (or stdout). --gzip compresses it (gzip level 1, for speed).
--describe prints the exact defect counts as JSON instead of the file.`

function numberOption(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  const value = Number(text.replaceAll('_', ''))
  if (text.trim() === '' || !Number.isFinite(value)) throw new RangeError(`--${name} must be a number, got "${text}"`)
  return value
}

async function main(argv: string[]): Promise<number> {
  let source: Readable
  let values: { gzip?: boolean; out?: string; describe?: boolean }
  try {
    const parsed = parseArgs({
      args: argv,
      options: {
        resource: { type: 'string' },
        format: { type: 'string' },
        rows: { type: 'string' },
        'defect-rate': { type: 'string' },
        seed: { type: 'string' },
        users: { type: 'string' },
        articles: { type: 'string' },
        gzip: { type: 'boolean' },
        out: { type: 'string' },
        describe: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    })
    if (parsed.values.help) {
      process.stdout.write(`${USAGE}\n`)
      return 0
    }
    const { resource, format, rows } = parsed.values
    if (!resource || !format || !rows) throw new RangeError('--resource, --format and --rows are required')
    const options: GenerateOptions = {
      resource: resource as Resource,
      format: format as Format,
      rows: numberOption('rows', rows) ?? 0,
      defectRate: numberOption('defect-rate', parsed.values['defect-rate']),
      seed: numberOption('seed', parsed.values.seed),
      users: numberOption('users', parsed.values.users),
      articles: numberOption('articles', parsed.values.articles),
    }
    values = parsed.values
    if (values.describe) {
      process.stdout.write(`${JSON.stringify(describeDefects(options))}\n`)
      return 0
    }
    source = generate(options)
  } catch (error) {
    process.stderr.write(`generate: ${(error as Error).message}\n${USAGE}\n`)
    return 2
  }
  const sink: Writable = values.out ? createWriteStream(values.out, { highWaterMark: 1 << 20 }) : process.stdout
  try {
    if (values.gzip) await pipeline(source, createGzip({ level: constants.Z_BEST_SPEED }), sink)
    else await pipeline(source, sink)
  } catch (error) {
    // A closed pipe (`| head`) is the reader's choice, not a failure.
    if ((error as NodeJS.ErrnoException).code === 'EPIPE') return 0
    process.stderr.write(`generate: ${(error as Error).message}\n`)
    return 1
  }
  return 0
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2))
