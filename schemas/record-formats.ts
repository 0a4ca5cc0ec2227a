import { FormatRegistry } from '@sinclair/typebox'

// The string formats of the import record schemas (resources/users.ts, articles.ts, comments.ts).
// TypeBox knows no format by itself: a compiled check calls the function registered here under
// the schema's `format` name. FormatRegistry is one map per thread, and ES modules run once per
// thread, so importing this module any number of times registers each format once; registering
// it again (same name, same function) would change nothing. This is the one place that
// registers them: anything else checking `uuid`, `email` or `date-time-with-zone` with TypeBox
// imports this module rather than registering its own, so the three cannot disagree.

// The checks are written out over character codes rather than as regular expressions: they run
// several times on each of a million records, and V8 takes 100-250 ns per `test` of these
// patterns against 10-40 ns here. Each one says the regular expression it implements.

const DIGIT_0 = 0x30
const DIGIT_9 = 0x39
const HYPHEN = 0x2d
const DOT = 0x2e
const COLON = 0x3a
const PLUS = 0x2b
const LATIN_CAPITAL_T = 0x54
const LATIN_CAPITAL_Z = 0x5a
const SPACE = 0x20

function isDigit(code: number): boolean {
  return code >= DIGIT_0 && code <= DIGIT_9
}

/**
 * Character classes of the ASCII code units, one bit each: `CLASSES[code] & HEX`. A code unit
 * past 127 reads undefined, which `&` turns into 0: in no class.
 */
const CLASSES = new Uint8Array(128)
const HEX = 1
const LABEL = 2 // may be in a domain label: letter, digit, hyphen
const LETTER = 4
const LOCAL_PART = 8 // may be in a local part: not white space, not one of @"(),:;<>[]\
for (let code = 0; code < 128; code++) {
  const character = String.fromCharCode(code)
  CLASSES[code] =
    (/[0-9a-f]/i.test(character) ? HEX : 0) |
    (/[A-Za-z0-9-]/.test(character) ? LABEL : 0) |
    (/[A-Za-z]/.test(character) ? LETTER : 0) |
    (/[\s@"(),:;<>[\]\\]/.test(character) ? 0 : LOCAL_PART)
}

function isHexRun(text: string, start: number, end: number): boolean {
  for (let index = start; index < end; index++)
    if (((CLASSES[text.charCodeAt(index)] as number) & HEX) === 0) return false
  return true
}

/**
 * Whether `text` is a UUID: 8-4-4-4-12 hexadecimal digits, any version, any case
 * (`/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i`).
 */
export function isUuid(text: string): boolean {
  return (
    text.length === 36 &&
    text.charCodeAt(8) === HYPHEN &&
    text.charCodeAt(13) === HYPHEN &&
    text.charCodeAt(18) === HYPHEN &&
    text.charCodeAt(23) === HYPHEN &&
    isHexRun(text, 0, 8) &&
    isHexRun(text, 9, 13) &&
    isHexRun(text, 14, 18) &&
    isHexRun(text, 19, 23) &&
    isHexRun(text, 24, 36)
  )
}

/** Whether a UTF-16 code unit is white space as JavaScript's `\s` and `String.prototype.trim` define it. */
export function isWhiteSpace(code: number): boolean {
  if (code <= SPACE) return code === SPACE || (code >= 0x09 && code <= 0x0d)
  if (code < 0xa0) return false
  return (
    code === 0xa0 ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000 ||
    code === 0xfeff
  )
}

/**
 * Whether `text` is a syntactically valid `local@domain.tld` address (its length is checked
 * apart): a local part without white space or `@"(),:;<>[]\`; a domain of at least two
 * dot-separated labels of ASCII letters, digits and hyphens (no hyphen first or last), the last
 * one of at least two letters
 * (`/^[^\s@"(),:;<>[\]\\]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}$/`).
 */
export function isEmail(text: string): boolean {
  const at = text.indexOf('@')
  if (at < 1) return false
  for (let index = 0; index < at; index++) {
    const code = text.charCodeAt(index)
    if (code < 128 ? ((CLASSES[code] as number) & LOCAL_PART) === 0 : isWhiteSpace(code)) return false
  }
  let labels = 0
  let labelStart = at + 1
  let lettersOnly = true
  for (let index = labelStart; index < text.length; index++) {
    const code = text.charCodeAt(index)
    const classes = CLASSES[code] as number // undefined past 127, which & makes 0
    if (classes & LETTER) continue
    if (code === DOT) {
      if (index === labelStart || text.charCodeAt(index - 1) === HYPHEN) return false
      labels++
      labelStart = index + 1
      lettersOnly = true
    } else if (classes & LABEL) {
      if (code === HYPHEN && index === labelStart) return false
      lettersOnly = false
    } else return false
  }
  return labels >= 1 && lettersOnly && text.length - labelStart >= 2
}

/** The number written by the two digits at `index`, or -1. */
function twoDigits(text: string, index: number): number {
  const tens = text.charCodeAt(index)
  const units = text.charCodeAt(index + 1)
  return isDigit(tens) && isDigit(units) ? (tens - DIGIT_0) * 10 + units - DIGIT_0 : -1
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31
}

/**
 * Whether `text` is an ISO-8601 date and time with a zone: `YYYY-MM-DDTHH:MM[:SS[.f{1,6}]]` (a
 * space may replace the T) then `Z`, `±HH:MM`, `±HHMM` or `±HH` (a space and `±HH` are how
 * PostgreSQL writes a timestamptz, and so how a CSV export writes it), of a day that exists (no 2023-02-29, no
 * year 0, which PostgreSQL's calendar lacks). Hours stop at 23 and seconds at 59: PostgreSQL
 * would roll `24:00` and a leap second over into the next day or minute, which is not what was
 * written. Offsets stop at ±15:59, PostgreSQL's limit. At most six fractional digits: PostgreSQL
 * keeps microseconds and would round a seventh.
 */
export function isTimestampWithZone(text: string): boolean {
  const length = text.length
  if (length < 17) return false // YYYY-MM-DDTHH:MMZ
  const century = twoDigits(text, 0)
  const yearOfCentury = twoDigits(text, 2)
  const month = twoDigits(text, 5)
  const day = twoDigits(text, 8)
  const hour = twoDigits(text, 11)
  const minute = twoDigits(text, 14)
  const separator = text.charCodeAt(10)
  if (
    century < 0 ||
    yearOfCentury < 0 ||
    text.charCodeAt(4) !== HYPHEN ||
    text.charCodeAt(7) !== HYPHEN ||
    (separator !== LATIN_CAPITAL_T && separator !== SPACE) ||
    text.charCodeAt(13) !== COLON ||
    month < 1 ||
    month > 12 ||
    day < 1 ||
    hour < 0 ||
    hour > 23 ||
    minute < 0 ||
    minute > 59
  ) {
    return false
  }
  const year = century * 100 + yearOfCentury
  if (year === 0 || day > daysInMonth(year, month)) return false
  let index = 16
  if (text.charCodeAt(index) === COLON) {
    const second = twoDigits(text, 17)
    if (second < 0 || second > 59) return false
    index = 19
    if (text.charCodeAt(index) === DOT) {
      const fractionStart = ++index
      while (isDigit(text.charCodeAt(index))) index++
      const fractionDigits = index - fractionStart
      if (fractionDigits < 1 || fractionDigits > 6) return false
    }
  }
  const zone = text.charCodeAt(index)
  if (zone === LATIN_CAPITAL_Z) return index + 1 === length
  if (zone !== PLUS && zone !== HYPHEN) return false
  const offsetHours = twoDigits(text, index + 1)
  if (offsetHours < 0 || offsetHours > 15) return false
  if (length === index + 3) return true // ±HH
  const colon = text.charCodeAt(index + 3) === COLON
  const offsetMinutes = twoDigits(text, colon ? index + 4 : index + 3)
  return offsetMinutes >= 0 && offsetMinutes <= 59 && length === index + (colon ? 6 : 5)
}

/** Every record format: its check, and what it means in words (an error says `must be <expected>`). */
export const recordFormats = {
  uuid: { check: isUuid, expected: 'a UUID' },
  email: { check: isEmail, expected: 'an email address (local@domain.tld)' },
  'date-time-with-zone': {
    check: isTimestampWithZone,
    expected: 'an ISO-8601 timestamp with a time zone, at most 6 fractional digits',
  },
} as const satisfies Record<string, { check: (text: string) => boolean; expected: string }>

export type RecordFormat = keyof typeof recordFormats

for (const [name, { check }] of Object.entries(recordFormats)) FormatRegistry.Set(name, check)
