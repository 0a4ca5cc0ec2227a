import { CloneType, KindGuard, type TObject, type TSchema } from '@sinclair/typebox'
import { type TypeCheck, TypeCompiler } from '@sinclair/typebox/compiler'
import { type ValueError, ValueErrorType } from '@sinclair/typebox/errors'
import { isWhiteSpace, type RecordFormat, recordFormats } from '../../schemas/record-formats.ts'

// Field helpers shared by the record validators of the resources (resources/<name>.ts). They run inside
// tinypool worker threads on every record of an import (a million and more), so: no closures or
// regular expressions made per record, one compiled TypeBox check per resource made at module
// load, and the details of an error computed only for the records that fail it.
//
// Longer than most files on purpose: every field rule of the three validators in one place, so that
// the hot path's conventions (no per-record allocation, errors computed only on failure) hold alike.

/** Where a record comes from: a CSV row (text cells keyed by header) or a parsed JSON object. */
export type Source = 'csv' | 'json'

/** The per-record error codes of docs/contract.md §7. */
export type ErrorCode =
  | 'parse_error'
  | 'required'
  | 'invalid_format'
  | 'invalid_value'
  | 'too_long'
  | 'type_mismatch'
  | 'unique_violation'
  | 'foreign_key_violation'
  | 'invalid_state'
  | 'database_error'

/** One failing field of a record; the job adds `line`, `record` and `id`. */
export interface FieldError {
  field?: string
  code: ErrorCode
  message: string
  /** The offending value as given (not trimmed), as text made safe to store (see `valueText`). */
  value?: string
}

/**
 * A record's values ready for the database: `undefined` (or no key) is an absent field, which the
 * upsert leaves to its default or to the stored value; `null` is an explicit null.
 */
export type Row = Record<string, string | boolean | string[] | null | undefined>

export type RecordOutcome = { ok: true; row: Row } | { ok: false; errors: FieldError[] }

/** Longest `value` of an error, in characters (code points): enough to recognise it, small enough to store a million. */
export const ERROR_VALUE_MAX_LENGTH = 200

/**
 * A value that normalization refused, with the error it makes. It stands in the row in place of
 * the value, so that the compiled check fails and the slow path reports it. Normalizers return a
 * value or one of the rejections below, module constants: refusing a value allocates nothing.
 */
export class Rejection {
  readonly code: ErrorCode
  readonly message: string

  constructor(code: ErrorCode, message: string) {
    this.code = code
    this.message = message
  }
}

const NOT_A_BOOLEAN = new Rejection('invalid_value', 'must be true or false')
const NOT_A_TAG_LIST = new Rejection('invalid_format', 'must be a JSON array of strings, or tags separated by |')
const BLANK_TAG = new Rejection('invalid_value', 'must not contain a blank tag')
// PostgreSQL text cannot hold U+0000: one would fail the whole batch's statement, not one record.
const HAS_NUL = new Rejection('invalid_value', 'must not contain a NUL character (U+0000)')
// A lone surrogate (JSON `"\ud800"`) is not Unicode text: encoded for PostgreSQL it would become
// U+FFFD, a silent change of the value.
const LONE_SURROGATE = new Rejection('invalid_value', 'must be Unicode text (it holds a lone surrogate)')
const NUL = '\u0000'

/** Why a text cannot be stored as it is, or undefined when it can. */
function unstorable(text: string): Rejection | undefined {
  return text.includes(NUL) ? HAS_NUL : text.isWellFormed() ? undefined : LONE_SURROGATE
}

const NON_BLANK = /\S/
const LEFT_BRACKET = 0x5b

/**
 * A short text field (email, name, role, slug, title, status, a timestamp): trimmed, stored
 * trimmed. Empty after trimming, null or missing: absent. A JSON value that is not a string is
 * returned as is, for the schema to report a `type_mismatch`. Text (short or body, tags too) must
 * not contain U+0000 nor a lone surrogate.
 */
export function shortText(raw: unknown): unknown {
  if (typeof raw === 'string') {
    const text = raw.trim()
    return text === '' ? undefined : (unstorable(text) ?? text)
  }
  return raw === null ? undefined : raw
}

/** A nullable short text field (published_at): like `shortText`, except that empty or null is null. */
export function nullableText(raw: unknown): unknown {
  if (typeof raw === 'string') {
    const text = raw.trim()
    return text === '' ? null : (unstorable(text) ?? text)
  }
  return raw
}

/** A UUID field: like `shortText`, in lower case, so that UUIDs compare case-insensitively. */
export function uuid(raw: unknown): unknown {
  if (typeof raw === 'string') {
    const text = raw.trim()
    return text === '' ? undefined : text.toLowerCase()
  }
  return raw === null ? undefined : raw
}

/** A body: stored exactly as given; blank (empty after trimming), null or missing is absent. */
export function body(raw: unknown): unknown {
  if (typeof raw === 'string') return !NON_BLANK.test(raw) ? undefined : (unstorable(raw) ?? raw)
  return raw === null ? undefined : raw
}

/** A CSV boolean cell: `true` or `false` in any case, surrounding spaces ignored; empty is absent. */
export function csvBoolean(raw: unknown): unknown {
  if (typeof raw !== 'string') return raw === null ? undefined : raw
  const text = raw.trim()
  if (text === 'true') return true
  if (text === 'false') return false
  if (text === '') return undefined
  const lower = text.toLowerCase()
  return lower === 'true' ? true : lower === 'false' ? false : NOT_A_BOOLEAN
}

/**
 * A JSON boolean: types are strict, so `"true"` stays a string for the schema to report a
 * `type_mismatch`; null, or an empty or blank string (the empty value of an optional field), is absent.
 */
export function jsonBoolean(raw: unknown): unknown {
  if (typeof raw === 'boolean' || raw === undefined) return raw
  if (raw === null) return undefined
  return typeof raw === 'string' && !NON_BLANK.test(raw) ? undefined : raw
}

/**
 * A CSV tags cell: a JSON array literal when it starts with `[` (`["a","b"]`), otherwise tags
 * separated by `|` (`a|b`). Each tag is trimmed and must not be blank; an empty cell is absent.
 */
export function csvTags(raw: unknown): unknown {
  if (typeof raw !== 'string') return raw === null ? undefined : raw
  const text = raw.trim()
  if (text === '') return undefined
  if (text.charCodeAt(0) !== LEFT_BRACKET) return trimmedTags(text.split('|'))
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return NOT_A_TAG_LIST
  }
  return isStringArray(parsed) ? trimmedTags(parsed) : NOT_A_TAG_LIST
}

/**
 * A JSON tags value: an array of strings, each trimmed and not blank. null or an empty string is
 * absent; any other value is returned as is, for the schema to report a `type_mismatch`.
 */
export function jsonTags(raw: unknown): unknown {
  if (raw === null) return undefined
  if (typeof raw === 'string' && !NON_BLANK.test(raw)) return undefined
  return isStringArray(raw) ? trimmedTags(raw) : raw
}

function isStringArray(value: unknown): value is readonly string[] {
  if (!Array.isArray(value)) return false
  for (const item of value) if (typeof item !== 'string') return false
  return true
}

/** The tags trimmed, in a new array (a JSON input is never modified), or BLANK_TAG. */
function trimmedTags(tags: readonly string[]): string[] | Rejection {
  const result = new Array<string>(tags.length)
  for (let index = 0; index < tags.length; index++) {
    const tag = (tags[index] as string).trim()
    if (tag === '') return BLANK_TAG
    const rejection = unstorable(tag)
    if (rejection) return rejection
    result[index] = tag
  }
  return result
}

/** Length of `text` in Unicode code points (an astral character counts once), as PostgreSQL's char_length. */
export function codePointLength(text: string): number {
  let length = text.length
  for (let index = 0; index < text.length - 1; index++) {
    const code = text.charCodeAt(index)
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(index + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        length--
        index++
      }
    }
  }
  return length
}

/** Whether `text` is longer than `maxLength` code points; counts only when its UTF-16 length says it may be. */
export function isLongerThan(text: string, maxLength: number): boolean {
  return text.length > maxLength && codePointLength(text) > maxLength
}

/**
 * Number of whitespace-separated words in `text`, counting no further than `stopAfter + 1`
 * (enough to tell that a limit of `stopAfter` is broken).
 */
export function wordCount(text: string, stopAfter = Number.POSITIVE_INFINITY): number {
  let words = 0
  let inWord = false
  for (let index = 0; index < text.length; index++) {
    if (isWhiteSpace(text.charCodeAt(index))) inWord = false
    else if (!inWord) {
      inWord = true
      if (++words > stopAfter) return words
    }
  }
  return words
}

/** Whether `text` has more than `maxWords` words. A text of n characters has at most ⌈n/2⌉ words, so short ones are not scanned. */
export function hasMoreWordsThan(text: string, maxWords: number): boolean {
  return text.length > 2 * maxWords && wordCount(text, maxWords) > maxWords
}

/**
 * `text` made safe to store in PostgreSQL and to show: U+0000 and lone surrogates written as
 * `\u` escapes (as JSON writes them), at most `maxLength` code points; a longer text is cut and
 * ends with `…`, so that a reader knows it was cut. Most texts pass unchanged and uncopied.
 */
export function storableText(text: string, maxLength = ERROR_VALUE_MAX_LENGTH): string {
  if (text.length <= maxLength && !text.includes(NUL) && text.isWellFormed()) return text
  let result = ''
  let count = 0
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index)
    let piece: string
    let points = 1
    if (code === 0) {
      piece = '\\u0000'
      points = piece.length
    } else if (code >= 0xd800 && code <= 0xdfff) {
      const next = text.charCodeAt(index + 1)
      if (code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        piece = text.slice(index, index + 2)
        index++
      } else {
        piece = `\\u${code.toString(16)}`
        points = piece.length
      }
    } else piece = text.charAt(index)
    if (count + points > maxLength) return `${result}…`
    result += piece
    count += points
  }
  return result
}

/**
 * The start of `value` as JSON text: at least `budget` code units of it when it is longer, the
 * whole text otherwise. Unlike JSON.stringify it never recurses deeper than the text it writes
 * (each level writes a bracket), so a value nested 100,000 levels deep cannot exhaust the stack.
 */
function jsonStart(value: unknown, budget: number): string {
  let text = ''
  const visit = (item: unknown): void => {
    if (text.length > budget) return
    if (item === null || typeof item !== 'object') {
      text += JSON.stringify(item) ?? 'null'
      return
    }
    if (Array.isArray(item)) {
      text += '['
      for (let index = 0; index < item.length && text.length <= budget; index++) {
        if (index > 0) text += ','
        visit(item[index])
      }
      text += ']'
      return
    }
    text += '{'
    let first = true
    for (const key in item) {
      if (text.length > budget) break
      text += `${first ? '' : ','}${JSON.stringify(key)}:`
      first = false
      visit((item as Record<string, unknown>)[key])
    }
    text += '}'
  }
  visit(value)
  return text
}

/**
 * A raw input value as text for an error, safe to store (see storableText): strings as given,
 * other JSON values as JSON; at most ERROR_VALUE_MAX_LENGTH code points, marked when cut.
 */
export function valueText(raw: unknown): string {
  // A code point takes at most two code units: twice the length (and a margin) is always enough.
  const text = typeof raw === 'string' ? raw : jsonStart(raw, 2 * ERROR_VALUE_MAX_LENGTH + 8)
  return storableText(text)
}

/** A field error; `value` (the raw input value) is left out for `required`, where there is none worth showing. */
export function fieldError(field: string, code: ErrorCode, message: string, raw?: unknown): FieldError {
  if (code === 'required' || raw === undefined) return { field, code, message }
  return { field, code, message, value: valueText(raw) }
}

/**
 * A check JSON Schema cannot express (a word count, a rule across fields). It runs on a row whose
 * fields passed the schema — on the slow path, only when `field` has no error yet — and reports
 * `code` and `message` on `field`.
 */
export interface RecordRule {
  field: string
  code: ErrorCode
  message: string
  broken(row: Readonly<Record<string, unknown>>): boolean
}

export interface RecordValidatorOptions {
  /**
   * What a field's value must be, in words, where its schema cannot say it (a `pattern`): an
   * invalid value gives `must be <expected>`. Formats and enumerations say it themselves.
   */
  expected?: Readonly<Record<string, string>>
  rules?: readonly RecordRule[]
}

/** The codes a schema check gives. */
type SchemaCode = 'required' | 'type_mismatch' | 'invalid_format' | 'invalid_value' | 'too_long'

type Messages = Readonly<Record<SchemaCode, string>>

/**
 * The validation of one resource's records against its record schema (its descriptor, resources/<name>.ts),
 * compiled once. `maxLength` is taken out of the compiled check and applied in code points:
 * JSON Schema and PostgreSQL's char_length count code points, TypeBox counts UTF-16 code units.
 */
export class RecordValidator {
  readonly #columns: readonly string[]
  readonly #check: TypeCheck<TObject>
  readonly #limits: readonly { field: string; maxLength: number }[]
  readonly #rules: readonly RecordRule[]
  readonly #messages: ReadonlyMap<string, Messages>

  /** `columns` are the schema's properties in the order errors are reported (the CSV column order). */
  constructor(schema: TObject, columns: readonly string[], options: RecordValidatorOptions = {}) {
    const checked = CloneType(schema)
    const limits: { field: string; maxLength: number }[] = []
    const messages = new Map<string, Messages>()
    for (const field of columns) {
      const property = checked.properties[field]
      if (property === undefined) throw new Error(`column ${field} is not a property of schema ${schema.$id}`)
      const maxLength = property.maxLength
      if (typeof maxLength === 'number') {
        limits.push({ field, maxLength })
        delete property.maxLength
      }
      const expected = `must be ${options.expected?.[field] ?? expectation(property)}`
      messages.set(field, {
        required: 'is required',
        type_mismatch: `must be ${typeName(property)}`,
        invalid_format: expected,
        invalid_value: expected,
        too_long:
          maxLength === undefined ? 'is too long' : `must be at most ${maxLength.toLocaleString('en-US')} characters`,
      })
    }
    this.#columns = columns
    this.#check = TypeCompiler.Compile(checked)
    this.#limits = limits
    this.#rules = options.rules ?? []
    this.#messages = messages
  }

  /**
   * The outcome of a normalized row (`input` is the record as given, for the errors' values):
   * the row when it passes every check, else one error per failing field, in column order.
   */
  outcome(input: Readonly<Record<string, unknown>>, row: Record<string, unknown>): RecordOutcome {
    if (this.#check.Check(row) && this.#withinLimits(row) && this.#keepsRules(row)) return { ok: true, row: row as Row }
    return { ok: false, errors: this.#errors(input, row) }
  }

  #withinLimits(row: Record<string, unknown>): boolean {
    for (const { field, maxLength } of this.#limits) {
      const value = row[field]
      if (typeof value === 'string' && isLongerThan(value, maxLength)) return false
    }
    return true
  }

  #keepsRules(row: Record<string, unknown>): boolean {
    for (const rule of this.#rules) if (rule.broken(row)) return false
    return true
  }

  #errors(input: Readonly<Record<string, unknown>>, row: Record<string, unknown>): FieldError[] {
    const found = new Map<string, FieldError>()
    for (const field of this.#columns) {
      const value = row[field]
      if (value instanceof Rejection) found.set(field, fieldError(field, value.code, value.message, input[field]))
    }
    for (const error of this.#check.Errors(row)) {
      const field = error.path.split('/')[1] // '/tags/0' is about tags
      if (field === undefined || found.has(field)) continue
      // A value normalization made absent (empty, blank or null) fails a required property.
      const code: SchemaCode = row[field] === undefined ? 'required' : codeOf(error)
      found.set(field, fieldError(field, code, this.#message(field, code), input[field]))
    }
    for (const { field, maxLength } of this.#limits) {
      const value = row[field]
      if (found.has(field) || typeof value !== 'string' || !isLongerThan(value, maxLength)) continue
      found.set(field, fieldError(field, 'too_long', this.#message(field, 'too_long'), input[field]))
    }
    for (const rule of this.#rules) {
      if (found.has(rule.field) || !rule.broken(row)) continue
      found.set(rule.field, fieldError(rule.field, rule.code, rule.message, input[rule.field]))
    }
    const errors: FieldError[] = []
    for (const field of this.#columns) {
      const error = found.get(field)
      if (error !== undefined) errors.push(error)
    }
    if (errors.length === 0) throw new Error('a record failed its check, but no field error explains why')
    return errors
  }

  #message(field: string, code: SchemaCode): string {
    return (this.#messages.get(field) as Messages)[code]
  }
}

/** Our code for a TypeBox error. */
function codeOf(error: ValueError): SchemaCode {
  switch (error.type) {
    case ValueErrorType.ObjectRequiredProperty:
      return 'required'
    case ValueErrorType.StringFormat:
    case ValueErrorType.StringFormatUnknown:
    case ValueErrorType.StringPattern:
      return 'invalid_format'
    case ValueErrorType.StringMaxLength:
    case ValueErrorType.ArrayMaxItems:
      return 'too_long'
    case ValueErrorType.Literal:
      return typeof error.value === typeof error.schema.const ? 'invalid_value' : 'type_mismatch'
    case ValueErrorType.Union:
      return unionCode(error)
    case ValueErrorType.Array:
    case ValueErrorType.Boolean:
    case ValueErrorType.Integer:
    case ValueErrorType.Null:
    case ValueErrorType.Number:
    case ValueErrorType.Object:
    case ValueErrorType.String:
      return 'type_mismatch'
    default:
      return 'invalid_value'
  }
}

/**
 * A value fails a union when it fails every branch. A branch that failed for another reason than
 * the type tells what is wrong (a string that is not a timestamp, a string that is not one of the
 * literals); when every branch wants another type, the type is wrong.
 */
function unionCode(error: ValueError): SchemaCode {
  for (const branch of error.errors) {
    const first = branch.First()
    if (first === undefined) continue
    const code = codeOf(first)
    if (code !== 'type_mismatch') return code
  }
  return 'type_mismatch'
}

/** A union whose branches are all literals (an enumeration), or undefined. */
function literals(schema: TSchema): unknown[] | undefined {
  if (!KindGuard.IsUnion(schema) || !schema.anyOf.every((branch) => KindGuard.IsLiteral(branch))) return undefined
  return schema.anyOf.map((branch) => branch.const)
}

/** What a valid value of `schema` is, in words: `one of a, b`, or the phrase of its format. */
function expectation(schema: TSchema): string {
  const values = literals(schema)
  if (values !== undefined) return `one of ${values.join(', ')}`
  const branches = KindGuard.IsUnion(schema) ? schema.anyOf : [schema]
  for (const branch of branches) {
    const format = branch.format as RecordFormat | undefined
    if (format !== undefined && format in recordFormats) return recordFormats[format].expected
  }
  return 'valid'
}

/** The JSON type of `schema`, in words: `a string`, `an array of strings`, `a string or null`. */
function typeName(schema: TSchema): string {
  if (KindGuard.IsUnion(schema)) {
    // An enumeration is of its literals' type; another union is of any of its branches' types.
    const [first] = schema.anyOf
    if (literals(schema) !== undefined && first !== undefined) return typeName(first)
    return schema.anyOf.map((branch) => typeName(branch)).join(' or ')
  }
  if (KindGuard.IsArray(schema)) return `an array of ${typeName(schema.items).replace(/^an? /, '')}s`
  if (KindGuard.IsLiteral(schema)) return `a ${typeof schema.const}`
  if (KindGuard.IsNull(schema)) return 'null'
  if (KindGuard.IsBoolean(schema)) return 'a boolean'
  if (KindGuard.IsString(schema)) return 'a string'
  return `a ${String(schema.type)}`
}
