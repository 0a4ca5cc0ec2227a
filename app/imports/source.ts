import { createReadStream } from 'node:fs'
import { open } from 'node:fs/promises'
import { Transform } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { parse as parseCsv } from 'csv-parse/sync'
import { type ImportFormat, RecordSplitter } from './record-splitter.ts'
import type { ImportResource } from './resources.ts'

// The import source on disk: how to read it (gzip or not), what format it is, and whether it can
// be imported at all. Upload requests inspect it before they answer, so that a file that can
// never be imported gets a 4xx problem at once instead of a failed job; the job inspects it again
// (a URL source is only seen there).

const GZIP_MAGIC = [0x1f, 0x8b]
/** How much of the (decompressed) start of a source is inspected. */
const SAMPLE_BYTES = 64 * 1024

/** The source cannot be imported; `message` says why, for the client. */
export class SourceRejected extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'SourceRejected'
  }
}

export async function isGzip(path: string): Promise<boolean> {
  const file = await open(path, 'r')
  try {
    const { buffer, bytesRead } = await file.read(Buffer.alloc(2), 0, 2, 0)
    return bytesRead === 2 && buffer[0] === GZIP_MAGIC[0] && buffer[1] === GZIP_MAGIC[1]
  } finally {
    await file.close()
  }
}

export interface OpenedSource {
  /** The decompressed bytes. */
  bytes: AsyncIterable<Buffer>
  /** Bytes of the file (compressed, if it is) read so far: the progress of the job. */
  bytesRead(): number
  close(): void
}

/** Reads a source file from the start, decompressing gzip. */
export async function openSource(path: string): Promise<OpenedSource> {
  const gzip = await isGzip(path)
  const file = createReadStream(path, { highWaterMark: 256 * 1024 })
  let read = 0
  const counted = file.pipe(
    new Transform({
      transform(chunk: Buffer, _encoding, done) {
        read += chunk.length
        done(null, chunk)
      },
    }),
  )
  const bytes = gzip ? counted.pipe(createGunzip()) : counted
  return {
    bytes: bytes as AsyncIterable<Buffer>,
    bytesRead: () => read,
    close: () => {
      file.destroy()
      bytes.destroy()
    },
  }
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

/** SPEC §3: the request's format, else the file name's, else the Content-Type's, else sniffed. */
export function resolveFormat(hints: FormatHints, sample: Buffer): ImportFormat {
  if (hints.declared) return hints.declared
  const name = hints.filename?.toLowerCase().replace(/\.gz$/, '') ?? ''
  const extension = name.includes('.') ? name.slice(name.lastIndexOf('.') + 1) : ''
  if (extensions[extension]) return extensions[extension]
  const mediaType = hints.contentType?.split(';')[0]?.trim().toLowerCase() ?? ''
  if (mediaTypes[mediaType]) return mediaTypes[mediaType]
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

/** The CSV header's column names: matched by name, in any order (SPEC §1). */
export function parseHeader(bytes: Buffer, resource: ImportResource): { columns: string[]; warnings: string[] } {
  let columns: string[]
  try {
    const [row] = parseCsv(bytes, { bom: true, relax_quotes: false }) as string[][]
    columns = (row ?? []).map((name) => name.trim())
  } catch (error) {
    throw new SourceRejected(`the CSV header cannot be read: ${(error as Error).message}`)
  }
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
  const unknown = columns.filter((column) => column && !resource.columns.includes(column))
  const warnings = unknown.length ? [unknownFieldsWarning(unknown)] : []
  return { columns, warnings }
}

export function unknownFieldsWarning(fields: string[]): string {
  return `unknown field${fields.length > 1 ? 's' : ''} ignored: ${fields.join(', ')}`
}

export interface Inspection {
  format: ImportFormat
  gzip: boolean
  warnings: string[]
}

/**
 * Looks at the start of a source: refuses (SourceRejected) an empty or binary file, a JSON that
 * is not an array, a CSV header that lacks required columns, and a small file without records.
 */
export async function inspectSource(path: string, resource: ImportResource, hints: FormatHints): Promise<Inspection> {
  const source = await openSource(path)
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
    throw new SourceRejected(`the file cannot be decompressed: ${(error as Error).message}`)
  } finally {
    source.close()
  }
  const sample = Buffer.concat(pieces).subarray(0, SAMPLE_BYTES)
  const gzip = await isGzip(path)
  if (sample.length === 0) throw new SourceRejected('the file is empty')
  if (looksBinary(sample)) {
    throw new SourceRejected('the file is binary, not CSV, NDJSON or JSON text')
  }
  const format = resolveFormat(hints, sample)
  const splitter = new RecordSplitter({ format, batchRecords: Number.MAX_SAFE_INTEGER, maxRecordBytes: SAMPLE_BYTES })
  let warnings: string[] = []
  try {
    splitter.push(sample)
    if (complete) splitter.end()
  } catch (error) {
    throw new SourceRejected((error as Error).message)
  }
  if (format === 'csv') {
    if (!splitter.header) {
      throw new SourceRejected(complete ? 'the CSV file has no header row' : 'the CSV header is longer than 64 KiB')
    }
    warnings = parseHeader(splitter.header.bytes, resource).warnings
  }
  if (complete && splitter.records === 0) {
    throw new SourceRejected(format === 'csv' ? 'the CSV file has a header but no records' : 'the file has no records')
  }
  return { format, gzip, warnings }
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
