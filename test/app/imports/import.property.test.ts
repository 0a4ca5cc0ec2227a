import { gzipSync } from 'node:zlib'
import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { errorCodes, type ImportJob } from '../../../schemas/imports.ts'
import { buildTestApp, uploadImport, waitForImport } from '../../helper.ts'
import { propertyParameters } from '../../property.ts'

// Files nobody wrote by hand, through the real job (upload, inspection, splitting, parsing,
// validation, upsert, bookkeeping): arbitrary bytes, and CSV, NDJSON and JSON files that are
// valid but for local slips (stray and doubled quotes, an unclosed quote at the end, invalid
// UTF-8, NUL and lone-surrogate escapes, deep nesting, over-long records, blank lines, BOMs,
// CRLF, gzip, a gzip cut short). Whatever the file, the upload answers 202 or a 4xx problem, and
// the job ends `completed`, or `failed` with a documented code, never `internal_error`; for the
// generated files, processed equals the records the file holds by the documented rule.

const RECORD_MAX_BYTES = 2048
const DOCUMENTED_JOB_ERRORS = ['unprocessable', 'source_corrupt']

interface Source {
  resource: 'users' | 'articles' | 'comments'
  format: 'csv' | 'ndjson' | 'json'
  bytes: Buffer
  /** The records the file holds by the rule of docs/api.md; undefined when unknown (arbitrary bytes). */
  records?: number
  gzip: 'none' | 'whole' | 'cut'
}

// --- Values ------------------------------------------------------------------------------------

const hostileText = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.constantFrom('', ' ', 'a,b', 'say "hi"', '12"', '""', '"', 'line\nbreak', 'cr\rcr', 'tab\t', '🙂', 'é'),
  fc.constantFrom('\\u0000', '\\ud800', 'x\\udfffy'),
)
const email = fc.oneof(
  fc.integer({ min: 0, max: 30 }).map((n) => `user${n}@example.com`),
  fc.constantFrom('bad', 'USER1@EXAMPLE.COM', ' user2@example.com ', ''),
)
const uuid = fc.oneof(fc.uuid(), fc.constantFrom('not-a-uuid', ''))
const timestamp = fc.oneof(
  fc.constantFrom('2024-01-02T03:04:05Z', '2024-02-29T00:00:00.123456+01:00', '0000-01-01T00:00:00Z', 'yesterday', ''),
)
const field: Record<Source['resource'], Record<string, fc.Arbitrary<unknown>>> = {
  users: {
    id: uuid,
    email,
    name: hostileText,
    role: fc.constantFrom('admin', 'editor', 'author', 'reader', 'king', ''),
    active: fc.constantFrom(true, false, 'TRUE', 'nope'),
    created_at: timestamp,
  },
  articles: {
    id: uuid,
    slug: fc.oneof(fc.constantFrom('a-b', 'hello', 'Bad Slug', ''), fc.stringMatching(/^[a-z]{1,6}(-[a-z]{1,4})?$/)),
    title: hostileText,
    body: hostileText,
    author_id: uuid,
    tags: fc.oneof(fc.array(hostileText, { maxLength: 3 }), fc.constantFrom('a|b', '["x"]', '[', '')),
    status: fc.constantFrom('draft', 'published', 'lost'),
    published_at: timestamp,
  },
  comments: {
    id: uuid,
    article_id: uuid,
    user_id: uuid,
    body: hostileText,
    created_at: timestamp,
  },
}

/** A record as an object: some fields of the resource, maybe an unknown one, maybe a deep value. */
function recordOf(resource: Source['resource']): fc.Arbitrary<Record<string, unknown>> {
  const fields = field[resource]
  return fc
    .tuple(
      fc.record(fields, { requiredKeys: [] }),
      fc.option(fc.tuple(hostileText, fc.jsonValue({ maxDepth: 2 })), { freq: 4 }),
      fc.option(fc.constantFrom(...Object.keys(fields)), { freq: 8 }),
    )
    .map(([record, unknown, deepField]) => {
      const result: Record<string, unknown> = { ...record }
      if (unknown) result[`x_${unknown[0]}`] = unknown[1]
      if (deepField) result[deepField] = JSON.parse(`${'['.repeat(300)}${']'.repeat(300)}`)
      return result
    })
}

// --- CSV ---------------------------------------------------------------------------------------

/** A CSV cell: quoted when needed or at random, or one of the slips that keep the record's bounds. */
const csvCell = (value: unknown) =>
  fc.constantFrom('plain', 'quoted', 'stray', 'doubled', 'after').map((how) => {
    const text = typeof value === 'string' ? value : value === undefined ? '' : JSON.stringify(value)
    const needsQuotes = /[",\r\n]/.test(text)
    if (how === 'quoted' || needsQuotes) return `"${text.replaceAll('"', '""')}"`
    // A quote inside an unquoted field is an ordinary character (the documented leniency).
    if (how === 'stray') return `${text}x"y`
    if (how === 'doubled') return `${text}12""`
    // Text after a closing quote: this record's parse_error, the next record unharmed.
    if (how === 'after') return `"${text}"tail`
    return text
  })

function csvSource(resource: Source['resource']): fc.Arbitrary<Source> {
  const columns = Object.keys(field[resource])
  return fc
    .record({
      rows: fc.array(recordOf(resource), { minLength: 1, maxLength: 12 }),
      lineEnding: fc.constantFrom('\n', '\r\n'),
      bom: fc.boolean(),
      blankLines: fc.boolean(),
      unclosedLast: fc.boolean(),
      invalidUtf8: fc.boolean(),
      longRecord: fc.boolean(),
      seed: fc.integer(),
    })
    .chain((shape) =>
      fc.tuple(...shape.rows.map((row) => fc.tuple(...columns.map((column) => csvCell(row[column]))))).map((cells) => {
        const parts: Buffer[] = [Buffer.from(`${shape.bom ? '\uFEFF' : ''}${columns.join(',')}${shape.lineEnding}`)]
        cells.forEach((row, index) => {
          let line = row.join(',')
          if (shape.longRecord && index === 0) line += `,${'z'.repeat(RECORD_MAX_BYTES + 10)}`
          if (shape.unclosedLast && index === cells.length - 1) line += ',"never closed'
          parts.push(Buffer.from(line))
          if (shape.invalidUtf8 && index === 0) parts.push(Buffer.from([0xff, 0xfe]))
          parts.push(Buffer.from(shape.lineEnding))
          if (shape.blankLines && index % 2 === 0) parts.push(Buffer.from(shape.lineEnding))
        })
        return { resource, format: 'csv' as const, bytes: Buffer.concat(parts), records: cells.length, gzip: 'none' }
      }),
    )
}

// --- NDJSON and JSON arrays --------------------------------------------------------------------

/** One element's JSON text, or a slip that stays one record: garbage, a cut value, a stray `}`. */
const jsonElement = (record: Record<string, unknown>) =>
  fc.constantFrom('valid', 'valid', 'valid', 'garbage', 'stray', 'scalar').map((how) => {
    // The hostile texts hold `\u0000`-style escapes as text: put them back as JSON escapes.
    const text = JSON.stringify(record).replaceAll('\\\\u', '\\u')
    if (how === 'garbage') return 'not json at all'
    if (how === 'stray') return `${text}}`
    if (how === 'scalar') return '42'
    return text
  })

function ndjsonSource(resource: Source['resource']): fc.Arbitrary<Source> {
  return fc
    .record({
      rows: fc.array(recordOf(resource), { minLength: 1, maxLength: 12 }),
      blankLines: fc.boolean(),
      longRecord: fc.boolean(),
    })
    .chain((shape) =>
      fc.tuple(...shape.rows.map(jsonElement)).map((lines) => {
        const all = [...lines]
        if (shape.longRecord) all.push(`{"name":"${'n'.repeat(RECORD_MAX_BYTES)}"}`)
        const text = all.map((line) => (shape.blankLines ? `${line}\n  \n` : `${line}\n`)).join('')
        return { resource, format: 'ndjson' as const, bytes: Buffer.from(text), records: all.length, gzip: 'none' }
      }),
    )
}

function jsonSource(resource: Source['resource']): fc.Arbitrary<Source> {
  return fc
    .record({
      rows: fc.array(recordOf(resource), { minLength: 1, maxLength: 12 }),
      closed: fc.boolean(),
      spacing: fc.constantFrom('', '\n', ' \r\n '),
    })
    .chain((shape) =>
      fc.tuple(...shape.rows.map(jsonElement)).map((elements) => {
        const body = elements.join(`,${shape.spacing}`)
        const text = `[${shape.spacing}${body}${shape.spacing}${shape.closed ? ']' : ''}`
        return { resource, format: 'json' as const, bytes: Buffer.from(text), records: elements.length, gzip: 'none' }
      }),
    )
}

const resource = fc.constantFrom<Source['resource']>('users', 'articles', 'comments')

const nearValid: fc.Arbitrary<Source> = fc
  .tuple(
    resource.chain((name) => fc.oneof(csvSource(name), ndjsonSource(name), jsonSource(name))),
    fc.constantFrom<Source['gzip']>('none', 'none', 'whole', 'cut'),
  )
  .map(([source, gzip]) => ({ ...source, gzip }))

const arbitraryBytes: fc.Arbitrary<Source> = fc
  .record({
    resource,
    format: fc.constantFrom<Source['format']>('csv', 'ndjson', 'json'),
    bytes: fc.oneof(
      fc.uint8Array({ maxLength: 600 }).map((bytes) => Buffer.from(bytes)),
      // Text-like bytes pass the binary check: they reach the splitter and the parsers.
      fc
        .array(fc.constantFrom(...'{}[]",:\\\n\r ab1é\t'.split(''), '\\u0000', 'email', 'name,role'), {
          maxLength: 200,
        })
        .map((pieces) => Buffer.from(pieces.join(''))),
    ),
    gzip: fc.constantFrom<Source['gzip']>('none', 'whole', 'cut'),
  })
  .map((source) => ({ ...source, records: undefined }))

// --- The property --------------------------------------------------------------------------------

function encoded(source: Source): Buffer {
  if (source.gzip === 'none') return source.bytes
  const compressed = gzipSync(source.bytes)
  return source.gzip === 'whole' ? compressed : compressed.subarray(0, Math.max(2, compressed.length - 9))
}

/** Runs the source through the real job and checks what any import must hold. */
async function imports(app: FastifyInstance, source: Source): Promise<void> {
  const file = encoded(source)
  const response = await uploadImport(app, {
    resource: source.resource,
    file,
    filename: `upload.${source.format}${source.gzip === 'none' ? '' : '.gz'}`,
  })
  if (response.statusCode !== 202) {
    if (response.statusCode >= 500) throw new Error(`upload answered ${response.statusCode}: ${response.body}`)
    if (response.headers['content-type'] !== 'application/problem+json; charset=utf-8')
      throw new Error(`a refusal that is not a problem: ${response.body}`)
    // A near-valid file is refused only when the part inspected at upload is itself cut short.
    if (source.records !== undefined && source.gzip !== 'cut')
      throw new Error(`a near-valid file was refused: ${response.body}`)
    return
  }
  const job = await waitForImport(app, response.json<ImportJob>().id, 60_000)
  const { processed, inserted, updated, failed } = job.counters
  const context = () =>
    JSON.stringify({ job: { ...job, errors: job.errors.slice(0, 3) }, source: source.bytes.toString() })
  if (processed !== inserted + updated + failed) throw new Error(`counters do not add up: ${context()}`)
  if (job.status === 'failed') {
    const code = (job.error as { code?: string } | null)?.code ?? ''
    if (!DOCUMENTED_JOB_ERRORS.includes(code)) throw new Error(`failed with ${code}: ${context()}`)
  } else if (job.status !== 'completed') {
    throw new Error(`ended ${job.status}: ${context()}`)
  }
  for (const error of job.errors) {
    if (!(errorCodes as readonly string[]).includes(error.code)) throw new Error(`undocumented code: ${context()}`)
    if (error.record < 1 || error.record > processed || error.line < 1)
      throw new Error(`error out of place: ${context()}`)
  }
  if (source.records === undefined) return
  if (source.gzip === 'cut') {
    if (processed > source.records) throw new Error(`processed more records than the file holds: ${context()}`)
    return
  }
  if (job.status !== 'completed' || processed !== source.records)
    throw new Error(`expected ${source.records} records completed: ${context()}`)
}

t.test('generated near-valid files: every record is counted once, the job runs to its end', async (t) => {
  const app = await buildTestApp(t, {
    environment: { BATCH_SIZE: '3', RECORD_MAX_BYTES: String(RECORD_MAX_BYTES) },
  })
  app.jobs.start()
  await fc.assert(
    fc.asyncProperty(nearValid, (source) => imports(app, source)),
    propertyParameters(60),
  )
  const [jobs] = await app.sql<{ count: number; completed: number }[]>`
    select count(*)::int as count, count(*) filter (where status = 'completed')::int as completed from import_jobs`
  t.ok((jobs?.completed ?? 0) > 0, `${jobs?.count} jobs ran, ${jobs?.completed} completed, as the rule says`)
})

t.test('arbitrary bytes: a problem at upload or a job that ends with a documented outcome', async (t) => {
  const app = await buildTestApp(t, {
    environment: { BATCH_SIZE: '2', RECORD_MAX_BYTES: String(RECORD_MAX_BYTES) },
  })
  app.jobs.start()
  await fc.assert(
    fc.asyncProperty(arbitraryBytes, (source) => imports(app, source)),
    propertyParameters(60),
  )
  const [jobs] = await app.sql<{ count: number }[]>`select count(*)::int as count from import_jobs`
  t.pass(`no upload answered 5xx, none of the ${jobs?.count} jobs ended on an internal error`)
})
