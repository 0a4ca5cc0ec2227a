import { Transform } from 'node:stream'
import { createGunzip } from 'node:zlib'
import type { ResourceDescriptor as ImportResource } from '../../resources/index.ts'
import type { ObjectStore } from '../storage/object-store.ts'
import { parseS3Url, type Stores } from '../storage/stores.ts'
import { storableText } from '../workers/fields.ts'
import { parseCsvFields } from './csv-record.ts'
import { type ImportFormat, RecordSplitter, SourceFormatError } from './record-splitter.ts'
import { UNKNOWN_FIELD_NAME_MAX_LENGTH } from './unknown-fields.ts'

// The import source in the store (app/storage/): how to read it (gzip or not), what format it is, and whether it can
// be imported at all. Upload requests inspect it before they answer, so that a file that can
// never be imported gets a 4xx problem at once instead of a failed job; the job inspects it again
// (a URL source is only seen there).
//
// A little longer than most: sniffing, gzip detection and header checks of every format.

const GZIP_MAGIC = [0x1f, 0x8b]
/** How much of the (decompressed) start of a source is inspected. */
const SAMPLE_BYTES = 64 * 1024

/** The source cannot be imported; `message` says why, for the client. */
export class SourceRejected extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'SourceRejected'
  }
}

/**
 * The source could be read up to a point, then not: gzip data cut short or corrupt (its checksum
 * fails at its end), or the file could not be read. Records before that point stand.
 */
export class SourceCorrupt extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'SourceCorrupt'
  }
}

/** The error a source's bytes fail with, in the words of SourceCorrupt's message. */
export function sourceCorruption(error: unknown): SourceCorrupt | undefined {
  const { code, message } = error as { code?: unknown; message?: unknown }
  if (typeof code !== 'string' || typeof message !== 'string') return undefined
  if (code === 'Z_BUF_ERROR') return new SourceCorrupt(`the gzip data is cut short: ${message}`, { cause: error })
  if (code.startsWith('Z_')) return new SourceCorrupt(`the gzip data is corrupt: ${message}`, { cause: error })
  if (code === 'EIO') return new SourceCorrupt(`the file cannot be read: ${message}`, { cause: error })
  return undefined
}

/** Where a job's source is: a key of a store (the imports' store, or a bucket of S3_IMPORT_BUCKETS). */
export interface SourceLocation {
  store: ObjectStore
  key: string
}

/**
 * Where a job's source_path is: a key of the imports' store, or (a `s3://bucket/key` import, read
 * where it is) an object of a bucket of S3_IMPORT_BUCKETS.
 */
export function locateSource(stores: Stores, sourcePath: string): SourceLocation {
  const object = parseS3Url(sourcePath)
  if (object) return { store: stores.bucket(object.bucket), key: object.key }
  return { store: stores.imports, key: sourcePath }
}

export async function isGzip(source: SourceLocation): Promise<boolean> {
  const stream = await source.store.read(source.key, { start: 0, end: 1 })
  const head = Buffer.concat(await stream.toArray())
  return head.length === 2 && head[0] === GZIP_MAGIC[0] && head[1] === GZIP_MAGIC[1]
}

export interface OpenedSource {
  /** The decompressed bytes. */
  bytes: AsyncIterable<Buffer>
  /** Bytes of the file (compressed, if it is) read so far, from its start: the progress of the job. */
  bytesRead(): number
  /** Whether the file is gzip (read from its start whatever `from` asked). */
  gzip: boolean
  close(): void
}

/**
 * Reads a source, decompressing gzip: from its start, or from byte `from` of a file that is not
 * compressed (a resumed job's checkpoint: a ranged read, nothing before it is fetched again), up
 * to its end or (not compressed) to byte `to`.
 */
export async function openSource(source: SourceLocation, from = 0, to?: number): Promise<OpenedSource> {
  const gzip = await isGzip(source)
  const start = gzip ? 0 : from
  // `to` (the last byte wanted) bounds a plain file's read: a sample is not the whole object.
  const end = gzip ? undefined : to
  const file = await source.store.read(source.key, start > 0 || end !== undefined ? { start, end } : undefined)
  let read = start
  const counted = file.pipe(
    new Transform({
      transform(chunk: Buffer, _encoding, done) {
        read += chunk.length
        done(null, chunk)
      },
    }),
  )
  // pipe() does not pass errors on: the file's (a store that went away) must reach the reader.
  file.once('error', (error) => counted.destroy(error))
  const bytes = gzip ? counted.pipe(createGunzip()) : counted
  if (gzip) counted.once('error', (error) => bytes.destroy(error))
  return {
    bytes: bytes as AsyncIterable<Buffer>,
    bytesRead: () => read,
    gzip,
    close: () => {
      file.destroy()
      counted.destroy()
      bytes.destroy()
    },
  }
}

/** A CSV source's header record as the splitter reads it, and its line ending; undefined when it has none. */
export async function readCsvHeader(
  location: SourceLocation,
): Promise<(NonNullable<RecordSplitter['header']> & { lineEnding: '\n' | '\r\n' }) | undefined> {
  const source = await openSource(location)
  const splitter = new RecordSplitter({ format: 'csv', batchRecords: 1, maxRecordBytes: 1 << 20 })
  try {
    for await (const chunk of source.bytes) {
      splitter.push(chunk)
      if (splitter.header) return { ...splitter.header, lineEnding: splitter.lineEnding }
    }
  } finally {
    source.close()
  }
  return undefined
}

export interface FormatHints {
  /** Asked for by the client. */
  declared?: ImportFormat
  filename?: string | null
  contentType?: string | null
}

const extensions: Record<string, ImportFormat> = { csv: 'csv', ndjson: 'ndjson', jsonl: 'ndjson', json: 'json' }
const mediaTypes: Record<string, ImportFormat> = {
  'text/csv': 'csv',
  'application/csv': 'csv',
  'application/x-ndjson': 'ndjson',
  'application/ndjson': 'ndjson',
  'application/jsonl': 'ndjson',
  'application/json': 'json',
}

/** Where a source's format came from (docs/contract.md §4: in this order of precedence). */
export type FormatOrigin = 'request' | 'file name' | 'Content-Type' | 'content'

/** docs/contract.md §4: the request's format, else the file name's, else the Content-Type's, else sniffed. */
export function resolveFormat(hints: FormatHints, sample: Buffer): { format: ImportFormat; origin: FormatOrigin } {
  if (hints.declared) return { format: hints.declared, origin: 'request' }
  const name = hints.filename?.toLowerCase().replace(/\.gz$/, '') ?? ''
  const extension = name.includes('.') ? name.slice(name.lastIndexOf('.') + 1) : ''
  const byName = extensions[extension]
  if (byName) return { format: byName, origin: 'file name' }
  const mediaType = hints.contentType?.split(';')[0]?.trim().toLowerCase() ?? ''
  const byType = mediaTypes[mediaType]
  if (byType) return { format: byType, origin: 'Content-Type' }
  return { format: sniffFormat(sample), origin: 'content' }
}

/** The format the content looks like, from its first byte: `[` json, `{` ndjson, else csv. */
export function sniffFormat(sample: Buffer): ImportFormat {
  const first = sample.find(
    (byte) =>
      byte !== 0x20 &&
      byte !== 0x0a &&
      byte !== 0x0d &&
      byte !== 0x09 &&
      byte !== 0xef &&
      byte !== 0xbb &&
      byte !== 0xbf,
  )
  if (first === 0x5b) return 'json'
  if (first === 0x7b) return 'ndjson'
  return 'csv'
}

/**
 * The CSV header's column names: matched by name, in any order (docs/contract.md §1); `unknown` lists the
 * columns that are not the resource's, made safe to store.
 */
export function parseHeader(bytes: Buffer, resource: ImportResource): { columns: string[]; unknown: string[] } {
  // The header follows the records' rule (app/imports/csv-record.ts): a name a record could hold
  // is a name the header can hold.
  const fields = parseCsvFields(bytes.toString('utf8'))
  if (typeof fields === 'string') throw new SourceRejected(`the CSV header cannot be read: ${fields}`)
  const columns = fields.map((name) => name.trim())
  const seen = new Set<string>()
  for (const column of columns) {
    if (seen.has(column)) throw new SourceRejected(`the CSV header names the column "${column}" twice`)
    seen.add(column)
  }
  const missing = resource.required.filter((column) => !seen.has(column))
  if (missing.length) {
    throw new SourceRejected(
      `the CSV header lacks required column${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (it has: ${columns.join(', ')})`,
    )
  }
  const unknown = columns
    .filter((column) => column && !resource.columns.includes(column))
    .map((column) => storableText(column, UNKNOWN_FIELD_NAME_MAX_LENGTH))
  return { columns, unknown }
}

export interface Inspection {
  format: ImportFormat
  gzip: boolean
  warnings: string[]
  /** CSV: the header's unknown columns (see UnknownFields). */
  unknownFields: string[]
}

/**
 * Looks at the start of a source: refuses (SourceRejected) an empty or binary file, a JSON that
 * is not an array, a CSV header that lacks required columns, and a small file without records.
 */
export async function inspectSource(
  location: SourceLocation,
  resource: ImportResource,
  hints: FormatHints,
): Promise<Inspection> {
  const source = await openSource(location, 0, SAMPLE_BYTES - 1)
  const pieces: Buffer[] = []
  let sampled = 0
  let complete = true
  try {
    for await (const chunk of source.bytes) {
      pieces.push(chunk)
      sampled += chunk.length
      if (sampled >= SAMPLE_BYTES) {
        complete = false
        break
      }
    }
  } catch (error) {
    if (!source.gzip) throw error // the store's
    throw new SourceRejected(`the file cannot be decompressed: ${(error as Error).message}`)
  } finally {
    source.close()
  }
  const sample = Buffer.concat(pieces).subarray(0, SAMPLE_BYTES)
  const { gzip } = source
  if (sample.length === 0) throw new SourceRejected('the file is empty')
  if (looksBinary(sample)) {
    throw new SourceRejected('the file is binary, not CSV, NDJSON or JSON text')
  }
  const { format, origin } = resolveFormat(hints, sample)
  const looksLike = sniffFormat(sample)
  // A format that contradicts the content makes every record fail: say so before the user wonders.
  const mismatch =
    origin !== 'content' && looksLike !== format
      ? `the content looks like ${looksLike}, not ${format} (the format the ${origin} gave)`
      : undefined
  try {
    const inspection = inspectRecords(sample, complete, format, resource)
    if (mismatch) inspection.warnings.push(`${mismatch}: records that do not parse may come from the wrong format`)
    return { ...inspection, gzip }
  } catch (error) {
    // The splitter's refusals (not a JSON array, a single object) already say what the content is.
    if (error instanceof SourceRejected && mismatch && !(error.cause instanceof SourceFormatError))
      throw new SourceRejected(`${error.message}; ${mismatch}`)
    throw error
  }
}

/** The records at the start of a source (`sample`, all of it when `complete`) in `format`. */
function inspectRecords(
  sample: Buffer,
  complete: boolean,
  format: ImportFormat,
  resource: ImportResource,
): Omit<Inspection, 'gzip'> {
  const splitter = new RecordSplitter({ format, batchRecords: Number.MAX_SAFE_INTEGER, maxRecordBytes: SAMPLE_BYTES })
  let unknownFields: string[] = []
  try {
    splitter.push(sample)
    if (complete) splitter.end()
  } catch (error) {
    throw new SourceRejected((error as Error).message, { cause: error })
  }
  if (format === 'csv') {
    if (!splitter.header) {
      throw new SourceRejected(complete ? 'the CSV file has no header row' : 'the CSV header is longer than 64 KiB')
    }
    unknownFields = parseHeader(splitter.header.bytes, resource).unknown
  }
  if (complete && splitter.records === 0) {
    throw new SourceRejected(format === 'csv' ? 'the CSV file has a header but no records' : 'the file has no records')
  }
  return { format, warnings: [], unknownFields }
}

/**
 * Binary, not text: a NUL byte, or many control characters. Text in another encoding than UTF-8
 * passes (its records get `parse_error`s, one by one).
 */
function looksBinary(sample: Buffer): boolean {
  if (sample.includes(0)) return true
  let control = 0
  for (const byte of sample) {
    if (byte < 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d && byte !== 0x0c) control++
  }
  return control > sample.length / 100
}
