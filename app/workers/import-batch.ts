import { isAscii, isUtf8 } from 'node:buffer'
import { loadResources, type ResourceDescriptor } from '../../resources/index.ts'
import { parseCsvFields } from '../imports/csv-record.ts'
import { UNKNOWN_FIELD_NAME_MAX_LENGTH, UNKNOWN_FIELDS_LISTED } from '../imports/unknown-fields.ts'
import { type FieldError, type Row, type Source, storableText } from './fields.ts'

// The batch task of an import, run in a validation thread (validation-thread.ts) or in the job
// thread itself (batch-validation.ts): a batch of whole records arrives as raw bytes (split by
// the job thread, transferred to a validation thread without a copy); they are decoded, parsed
// and validated here, and only the outcome goes back: the valid rows already serialized as
// PostgreSQL array literals (one string per column, the parameters of the resource's upsert) and
// the per-record errors. Parsed objects never cross threads: structured-cloning them costs as
// much as validating them.
//
// A little longer than most: decoding, the CSV and JSON parsers' entry points and the serialization
// of rows for the upsert are one task, timed as one stage.

export type ImportFormat = 'csv' | 'ndjson' | 'json'

export interface BatchTask {
  /** The resource's descriptor module (its `module`): the thread loads its `validate` from it. */
  resource: string
  format: ImportFormat
  /** The records' bytes, each followed by "\n" (see RecordSplitter). */
  chunk: Uint8Array
  /** Per record: start in `chunk` (-1 when the splitter left its bytes out), byte length. */
  starts: Int32Array
  lengths: Int32Array
  /** Per record: a defect the splitter found (0 none, 1 too large, 2 unterminated: splitterProblemCodes). */
  problems: Uint8Array
  /** CSV: the header's column names, in file order. */
  header?: string[]
  /** The resource's columns, in the order of the upsert's parameters. */
  columns: readonly string[]
  /** Columns where an explicit null differs from absent: each gets a presence array too. */
  nullableColumns: readonly string[]
  /** The natural key's column (and whether it compares case-insensitively), if the resource has one. */
  naturalKey?: { column: string; caseInsensitive: boolean }
  maxRecordBytes: number
}

export interface BatchError extends FieldError {
  /** 0-based index of the record in the batch. */
  index: number
  /** The record's id as given, when it has one. */
  id?: string
}

export interface BatchResult {
  /**
   * The upsert's parameters: ordinals (1-based index in the batch), one array literal per column,
   * then one presence literal per nullable column. Only valid records are in them.
   */
  params: string[]
  valid: number
  /**
   * Hashes of the keys the valid records carry (their ids and natural keys): the writer runs two
   * batches side by side only when they share none (app/imports/batch-writer.ts).
   */
  carried: Float64Array
  errors: BatchError[]
  /**
   * JSON keys that are not columns (CSV unknown columns are known from the header): the first
   * UNKNOWN_FIELDS_LISTED met, made safe to store; `moreUnknownFields` when the batch had more.
   */
  unknownFields: string[]
  moreUnknownFields: boolean
  parseMs: number
  validateMs: number
}

/** Longest parse error message stored, in code points. */
const PARSE_MESSAGE_MAX_LENGTH = 500

/** Codes of BatchTask.problems. Shared with the main thread: app/imports/record-splitter.ts. */
const PROBLEM_TOO_LARGE = 1

type Validate = ResourceDescriptor['validate']
const validators = new Map<string, Promise<Validate>>()

/** The resource's validator (its descriptor's `validate`), loaded once per thread. */
function validatorOf(module: string): Promise<Validate> {
  let loaded = validators.get(module)
  if (!loaded) {
    loaded = loadResources([module]).then(([resource]) => (resource as ResourceDescriptor).validate)
    validators.set(module, loaded)
  }
  return loaded
}

/**
 * A task of its own (tinypool's `name: 'warmUp'`): loads the validators of `modules`, so that the
 * thread is started and loaded before the first batch comes (batch-validation.ts).
 */
export async function warmUp(modules: readonly string[]): Promise<void> {
  await Promise.all(modules.map(validatorOf))
}

const utf8 = new TextDecoder('utf-8')

/** The batch task (tinypool's entry point). */
export default async function importBatch(task: BatchTask): Promise<BatchResult> {
  const validate = await validatorOf(task.resource)
  const source: Source = task.format === 'csv' ? 'csv' : 'json'
  const count = task.starts.length
  const chunk = Buffer.from(task.chunk.buffer, task.chunk.byteOffset, task.chunk.byteLength)
  const columns = task.columns
  const values: string[][] = columns.map(() => [])
  const presence: string[][] = task.nullableColumns.map(() => [])
  const ordinals: string[] = []
  const errors: BatchError[] = []
  const unknown = new Set<string>()
  let moreUnknown = false
  const known = new Set(columns)
  // At most two keys per record (its id, its natural key); typed, so that no hash is a heap number.
  const carried = new Float64Array(2 * count)
  let carriedCount = 0
  const naturalKey = task.naturalKey

  /** Validates a parsed record: its values join the batch's arrays, or its errors the batch's. */
  const accept = (index: number, record: Record<string, unknown>) => {
    const outcome = validate(record, source)
    if (!outcome.ok) {
      const id = typeof record.id === 'string' && record.id.trim() ? storableText(record.id.trim()) : undefined
      for (const error of outcome.errors) errors.push(id ? { ...error, index, id } : { ...error, index })
      return
    }
    ordinals.push(String(index + 1))
    const row = outcome.row
    if (typeof row.id === 'string') carried[carriedCount++] = keyHash(`t${row.id}`)
    const natural = naturalKey ? row[naturalKey.column] : undefined
    if (typeof natural === 'string') {
      carried[carriedCount++] = keyHash(`k${naturalKey?.caseInsensitive ? natural.toLowerCase() : natural}`)
    }
    for (let column = 0; column < columns.length; column++) {
      ;(values[column] as string[]).push(element(row[columns[column] as string]))
    }
    for (let column = 0; column < presence.length; column++) {
      ;(presence[column] as string[]).push(row[task.nullableColumns[column] as string] === undefined ? 'f' : 't')
    }
  }

  // Most chunks are plain ASCII: decode once and slice; otherwise decode record by record.
  // One pass, each record parsed and validated in turn: its objects die young, which keeps the
  // young generation's collections cheap (two passes kept a batch of parsed records alive, and
  // collecting them took a third of the thread's time). Each stage is timed per record.
  let clock = performance.now()
  const ascii = isAscii(chunk)
  const whole = ascii ? utf8.decode(chunk) : ''
  let parseMs = performance.now() - clock
  let validateMs = 0
  // Two clock readings per record: the end of one record's validation starts the next one's parse.
  clock = performance.now()
  for (let index = 0; index < count; index++) {
    const problem = task.problems[index]
    if (problem) {
      errors.push({ index, code: 'parse_error', message: splitterMessage(problem, task) })
      continue
    }
    const start = task.starts[index] as number
    const end = start + (task.lengths[index] as number)
    let text: string
    if (ascii) text = whole.slice(start, end)
    else if (isUtf8(chunk.subarray(start, end))) text = utf8.decode(chunk.subarray(start, end))
    else {
      errors.push({ index, code: 'parse_error', message: 'the record is not valid UTF-8' })
      continue
    }
    const record = source === 'csv' ? parseCsvRecord(text, task.header as string[]) : parseJsonRecord(text)
    const parsed = performance.now()
    parseMs += parsed - clock
    clock = parsed
    if (typeof record === 'string') {
      // A parser's message may quote the text it choked on (a NUL byte, say): store it safely.
      errors.push({ index, code: 'parse_error', message: storableText(record, PARSE_MESSAGE_MAX_LENGTH) })
      continue
    }
    if (source === 'json') {
      for (const key in record) {
        if (known.has(key) || unknown.has(key)) continue
        if (unknown.size < UNKNOWN_FIELDS_LISTED) unknown.add(key)
        else moreUnknown = true
      }
    }
    accept(index, record)
    clock = performance.now()
    validateMs += clock - parsed
  }

  return {
    params: [literal(ordinals), ...values.map(literal), ...presence.map(literal)],
    valid: ordinals.length,
    carried: carried.subarray(0, carriedCount),
    errors,
    unknownFields: [...new Set(Array.from(unknown, (name) => storableText(name, UNKNOWN_FIELD_NAME_MAX_LENGTH)))],
    moreUnknownFields: moreUnknown,
    parseMs,
    validateMs,
  }
}

function splitterMessage(problem: number, task: BatchTask): string {
  if (problem === PROBLEM_TOO_LARGE) {
    return `the record is larger than ${task.maxRecordBytes} bytes (RECORD_MAX_BYTES)`
  }
  return task.format === 'csv'
    ? 'a quoted field is not closed before the end of the file'
    : 'the JSON value is not closed before the end of the file'
}

/**
 * A 53-bit hash of a key (cyrb53: two 32-bit multiply-xor lanes), exact as a JavaScript number.
 * A collision only makes two batches run one after the other.
 */
function keyHash(text: string): number {
  let h1 = 0xdeadbeef
  let h2 = 0x41c6ce57
  for (let at = 0; at < text.length; at++) {
    const code = text.charCodeAt(at)
    h1 = Math.imul(h1 ^ code, 2654435761)
    h2 = Math.imul(h2 ^ code, 1597334677)
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909)
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909)
  return 4294967296 * (2097151 & h2) + (h1 >>> 0)
}

// --- Parsing ---------------------------------------------------------------------------------

/** One JSON object, or a message saying why the text is not one. */
function parseJsonRecord(text: string): Record<string, unknown> | string {
  // Two commas in a row in a JSON array leave an element of nothing (app/imports/record-splitter.ts).
  if (text.trim() === '') return 'the JSON value is empty'
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    return `invalid JSON: ${(error as Error).message}`
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return 'the record must be a JSON object'
  }
  return value as Record<string, unknown>
}

/**
 * One CSV record as an object keyed by the header, or a message saying why it cannot be read
 * (app/imports/csv-record.ts has the rule, which the splitter follows too).
 */
export function parseCsvRecord(text: string, header: string[]): Record<string, unknown> | string {
  const fields = parseCsvFields(text)
  if (typeof fields === 'string') return fields
  if (fields.length !== header.length) return `the record has ${fields.length} fields; the header has ${header.length}`
  const record: Record<string, unknown> = {}
  for (let index = 0; index < fields.length; index++) record[header[index] as string] = fields[index]
  return record
}

// --- PostgreSQL array literals ---------------------------------------------------------------

/** A value as an element of a PostgreSQL array literal; absent and null are both NULL. */
function element(value: Row[string]): string {
  if (value === undefined || value === null) return 'NULL'
  if (typeof value === 'boolean') return value ? 't' : 'f'
  if (Array.isArray(value)) return quote(literal(value.map(quote)))
  return quote(value)
}

/**
 * Characters that make an array element need quotes (PostgreSQL's array_in): braces, comma,
 * quote, backslash, whitespace. Most values (UUIDs, timestamps, emails, roles) need none, and
 * passing them as they are avoids building a new string per value.
 */
const SPECIAL = /[{},"\\\s]/

function quote(text: string): string {
  if (text.length > 0 && !SPECIAL.test(text) && !(text.length === 4 && text.toUpperCase() === 'NULL')) return text
  if (text.indexOf('"') === -1 && text.indexOf('\\') === -1) return `"${text}"`
  return `"${text.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`
}

function literal(elements: string[]): string {
  return `{${elements.join(',')}}`
}
