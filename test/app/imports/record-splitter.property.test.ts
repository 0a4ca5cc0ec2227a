import assert from 'node:assert/strict'
import { parse } from 'csv-parse/sync'
import fc from 'fast-check'
import t from 'tap'
import { type ImportFormat, RecordSplitter } from '../../../app/imports/record-splitter.ts'
import { parseCsvRecord } from '../../../app/workers/import-batch.ts'
import { propertyParameters } from '../../property.ts'
import { jsonText, linesBefore } from './splitter-text.ts'

// The splitter against references, on generated sources pushed in pieces of random sizes:
// csv-parse (strict) on valid CSV; on CSV, NDJSON and JSON arrays that are valid or nearly so,
// references written byte by byte from the rule in docs/api.md ("Records and errors"), with
// none of the splitter's indexOf jumps or state carried across pieces.

const LF = 0x0a
const CR = 0x0d
const QUOTE = 0x22
const COMMA = 0x2c
const BACKSLASH = 0x5c
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const BOM = '\uFEFF'

/** A record as found: its start line, its text (the source's bytes in its span) and its defect. */
interface Found {
  line: number
  text: string
  problem?: 'too_large' | 'unterminated'
}

interface Split {
  header: Found | undefined
  records: Found[]
  warnings: string[]
}

/** Splits `source` pushed in pieces of `sizes` bytes (cycled), checking what each batch carries. */
function split(
  source: Buffer,
  format: ImportFormat,
  sizes: readonly number[],
  maxRecordBytes = 1 << 20,
  skipRecords = 0,
): Split {
  // Small batches, so that records and batches end in every possible order.
  const splitter = new RecordSplitter({ format, batchRecords: 3, maxBatchBytes: 64, maxRecordBytes, skipRecords })
  const batches = []
  for (let at = 0, piece = 0; at < source.length; piece++) {
    const size = sizes[piece % sizes.length] as number
    batches.push(...splitter.push(source.subarray(at, at + size)))
    at += size
  }
  batches.push(...splitter.end())
  const records: Found[] = []
  for (const batch of batches) {
    batch.spans.forEach((span, index) => {
      assert.equal(span.record, skipRecords + records.length + 1, 'records are numbered in order')
      const bytes = source.subarray(span.offset, span.offset + span.length)
      const start = batch.starts[index] as number
      if (span.problem === 'too_large') assert.equal(start, -1)
      else assert.deepEqual(batch.chunk.subarray(start, start + span.length), bytes, 'the batch carries the span')
      records.push({ line: span.line, text: bytes.toString(), ...(span.problem ? { problem: span.problem } : {}) })
    })
  }
  const header = splitter.header && {
    line: splitter.header.span.line,
    text: source
      .subarray(splitter.header.span.offset, splitter.header.span.offset + splitter.header.span.length)
      .toString(),
  }
  if (header && splitter.header && splitter.header.span.length <= maxRecordBytes) {
    assert.equal(splitter.header.bytes.toString(), header.text, 'the header bytes are its span')
  }
  return { header, records, warnings: splitter.warnings }
}

const isWhitespace = (byte: number | undefined) => byte === 0x20 || byte === LF || byte === CR || byte === 0x09

/** The record's defect by the rule: longer than the limit, else left open at the end of the file. */
function problemOf(text: string, unterminated: boolean, maxRecordBytes: number): Pick<Found, 'problem'> {
  if (Buffer.byteLength(text) > maxRecordBytes) return { problem: 'too_large' }
  return unterminated ? { problem: 'unterminated' } : {}
}

// --- Generators ------------------------------------------------------------------------------

/** Sizes of the pieces a source is pushed in: often 1 byte, else a few sizes cycled. */
const pieceSizes = fc.oneof(
  fc.constant([1]),
  fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 6 }),
  fc.constant([1 << 20]),
)

/** Cell text with every character CSV cares about, unicode and NUL among others. */
const cellText = fc
  .array(
    fc.oneof(
      {
        weight: 3,
        arbitrary: fc.constantFrom(',', '"', '""', '\r', '\n', '\r\n', ' ', '\t', 'é', '€', '😀', '\u0000'),
      },
      { weight: 2, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 4 }) },
      { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 3 }) },
    ),
    { maxLength: 5 },
  )
  .map((parts) => parts.join(''))

interface CsvFile {
  /** The cells of the header and of each row, blank lines (one empty unquoted cell) left out. */
  rows: string[][]
  /** The file's text. */
  text: string
}

/** Valid CSV (RFC 4180, LF or CRLF): quoted when needed or at random, blank lines, BOM. */
const validCsv: fc.Arbitrary<CsvFile> = fc.integer({ min: 1, max: 4 }).chain((columns) =>
  fc
    .record({
      rows: fc.array(fc.array(fc.tuple(cellText, fc.boolean()), { minLength: columns, maxLength: columns }), {
        minLength: 1,
        maxLength: 8,
      }),
      blankLines: fc.array(fc.nat(2), { minLength: 9, maxLength: 9 }),
      lineEnding: fc.constantFrom('\n', '\r\n'),
      trailingLineEnding: fc.boolean(),
      bom: fc.boolean(),
    })
    .map(({ rows, blankLines, lineEnding, trailingLineEnding, bom }) => {
      const lines = rows.map((cells, index) => {
        const line = cells
          .map(([text, quoted]) => (quoted || /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text))
          .join(',')
        return lineEnding.repeat(blankLines[index] as number) + line
      })
      const text = (bom ? BOM : '') + lines.join(lineEnding) + (trailingLineEnding ? lineEnding : '')
      const written = rows.filter((cells) => cells.length > 1 || cells[0]?.[0] !== '' || cells[0]?.[1])
      return { rows: written.map((cells) => cells.map(([text]) => text)), text }
    }),
)

/** Text with a few local slips: stray, doubled or unclosed quotes, text after a closing quote, CR alone... */
function withSlips(text: string): fc.Arbitrary<string> {
  const slip = fc.oneof(
    fc.constantFrom('"', '""', '"x', 'x"', '"x"y', '" "', '\r', '\n', '\r\n', ',', '"\n', '"\r\n"'),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 4 }).filter((garbage) => !garbage.includes('\u0000')),
    fc.constant(''), // with `remove`: a deleted character
  )
  return fc
    .array(fc.record({ at: fc.nat(), slip, remove: fc.boolean() }), { minLength: 1, maxLength: 5 })
    .map((slips) => {
      const characters = Array.from(text)
      for (const { at, slip: inserted, remove } of slips) {
        const index = at % (characters.length + 1)
        characters.splice(index, remove ? 1 : 0, inserted)
      }
      return characters.join('')
    })
}

// --- CSV references --------------------------------------------------------------------------

interface CsvParseRecord {
  record: string[]
  raw: string
  info: { bytes: number }
}

/** csv-parse's records (strict), each with its start line and text, computed from where it ends. */
function csvParseRecords(source: Buffer): (Found & { fields: string[] })[] {
  const parsed = parse(source, {
    bom: true,
    skip_empty_lines: true,
    info: true,
    raw: true,
  }) as unknown as CsvParseRecord[]
  let previousEnd = source.subarray(0, 3).toString() === BOM ? 3 : 0
  return parsed.map(({ record, raw, info }) => {
    // csv-parse reports where a record ends (info.bytes, after its line end); it starts after the
    // previous one and the blank lines it skipped.
    let start = previousEnd
    while (source[start] === LF || (source[start] === CR && source[start + 1] === LF)) {
      start += source[start] === LF ? 1 : 2
    }
    previousEnd = info.bytes
    let end = info.bytes
    if (source[end - 1] === LF) end -= source[end - 2] === CR ? 2 : 1
    const text = source.subarray(start, end).toString()
    // csv-parse's raw text keeps the skipped blank lines before a record and the line end after
    // it, without the LF of a CRLF: take them off before comparing.
    assert.equal(raw.replace(/^[\r\n]+/, '').replace(/(\r\n|\n|\r)$/, ''), text, 'csv-parse raw record')
    return { line: linesBefore(source, start), text, fields: record }
  })
}

type CsvState = 'fieldStart' | 'unquoted' | 'quoted' | 'quoteInQuoted'

/**
 * The rule, byte by byte: a quote opens a quoted field only where a field starts; inside one,
 * `""` is a quote and another quote closes it; a LF outside quoted fields ends the record (a CR
 * just before it is part of the line end); empty lines are not records; the first is the header.
 */
function referenceCsv(source: Buffer, maxRecordBytes: number): { header: Found | undefined; records: Found[] } {
  const all: Found[] = []
  let at = source.subarray(0, 3).toString() === BOM ? 3 : 0
  let line = 1
  let start = at
  let startLine = line
  let state: CsvState = 'fieldStart'
  const take = (end: number, unterminated: boolean) => {
    const text = source.subarray(start, end).toString()
    all.push({ line: startLine, text, ...problemOf(text, unterminated, maxRecordBytes) })
  }
  for (; at < source.length; at++) {
    const byte = source[at]
    if (byte === LF) line++
    if (state === 'quoted') {
      if (byte === QUOTE) state = 'quoteInQuoted'
      continue
    }
    if (state === 'quoteInQuoted' && byte === QUOTE) {
      state = 'quoted'
      continue
    }
    if (byte === LF) {
      const end = at > start && source[at - 1] === CR ? at - 1 : at
      if (end > start) take(end, false)
      start = at + 1
      startLine = line
      state = 'fieldStart'
    } else if (byte === COMMA) state = 'fieldStart'
    else if (byte === QUOTE && state === 'fieldStart') state = 'quoted'
    else state = 'unquoted'
  }
  if (start < source.length) take(source.length, state === 'quoted')
  const [header, ...records] = all
  return { header: header && { line: header.line, text: header.text }, records }
}

/** The rule's fields of a record, and whether it breaks it (text after a closing quote, or an unclosed one). */
function referenceFields(text: string): { fields: string[]; malformed: boolean } {
  const fields: string[] = []
  let field = ''
  let state: CsvState = 'fieldStart'
  let malformed = false
  for (const character of text) {
    if (state === 'quoted') {
      if (character === '"') state = 'quoteInQuoted'
      else field += character
      continue
    }
    if (state === 'quoteInQuoted') {
      if (character === '"') {
        field += '"'
        state = 'quoted'
        continue
      }
      if (character !== ',') malformed = true
    }
    if (character === ',') {
      fields.push(field)
      field = ''
      state = 'fieldStart'
    } else if (character === '"' && state === 'fieldStart') state = 'quoted'
    else {
      field += character
      state = 'unquoted'
    }
  }
  if (state === 'quoted') malformed = true
  fields.push(field)
  return { fields, malformed }
}

/** parseCsvRecord's fields, in column order, or its parse_error message. */
function parserFields(text: string, columns: number): string[] | string {
  const header = Array.from({ length: columns }, (_, index) => `c${index}`)
  const parsed = parseCsvRecord(text, header)
  return typeof parsed === 'string' ? parsed : header.map((name) => parsed[name] as string)
}

const withoutFields = ({ fields: _, ...found }: Found & { fields: string[] }): Found => found

t.test('on valid CSV with arbitrary quoting, records and lines are those of csv-parse in strict mode', async (t) => {
  fc.assert(
    fc.property(validCsv, pieceSizes, fc.nat(10), ({ rows, text }, sizes, skip) => {
      const source = Buffer.from(text)
      const expected = csvParseRecords(source)
      // The generator's own check: csv-parse reads back the cells written.
      assert.deepEqual(
        expected.map((record) => record.fields),
        rows,
      )
      const found = split(source, 'csv', sizes)
      assert.deepEqual(found.header, expected[0] && withoutFields(expected[0]))
      assert.deepEqual(found.records, expected.slice(1).map(withoutFields))
      for (const record of expected.slice(1)) {
        assert.deepEqual(parserFields(record.text, record.fields.length), record.fields, 'parseCsvRecord agrees')
      }
      // A resumed job passes over its committed records and finds the same ones after them.
      assert.deepEqual(split(source, 'csv', sizes, 1 << 20, skip).records, found.records.slice(skip))
    }),
    propertyParameters(300),
  )
  t.pass('csv-parse and the splitter agree')
})

t.test('on near-valid CSV, records are those of the rule, and the parser reads each as the rule does', async (t) => {
  const maxRecordBytes = fc.oneof(fc.constant(1 << 20), fc.integer({ min: 1, max: 40 }))
  fc.assert(
    fc.property(
      validCsv.chain(({ text }) => withSlips(text)),
      pieceSizes,
      maxRecordBytes,
      (text, sizes, limit) => {
        const source = Buffer.from(text)
        const expected = referenceCsv(source, limit)
        const found = split(source, 'csv', sizes, limit)
        assert.deepEqual(found.header, expected.header)
        assert.deepEqual(found.records, expected.records)
        const lineEnds = source.filter((byte) => byte === LF).length
        assert.ok(found.records.length <= lineEnds + 1, 'never more records than lines')
        for (const record of found.records) {
          if (record.problem) continue
          const rule = referenceFields(record.text)
          const parsed = parserFields(record.text, rule.fields.length)
          if (rule.malformed) assert.equal(typeof parsed, 'string', `${JSON.stringify(record.text)} is refused`)
          else assert.deepEqual(parsed, rule.fields)
        }
      },
    ),
    propertyParameters(400),
  )
  t.pass('the rule, the splitter and the parser agree')
})

// --- NDJSON ----------------------------------------------------------------------------------

/** The rule: each LF ends a line (a CR before it is part of the line end); blank lines are not records. */
function referenceNdjson(source: Buffer, maxRecordBytes: number): Found[] {
  const records: Found[] = []
  let start = source.subarray(0, 3).toString() === BOM ? 3 : 0
  let line = 1
  while (start < source.length) {
    const newline = source.indexOf(LF, start)
    let end = newline === -1 ? source.length : newline
    if (newline !== -1 && end > start && source[end - 1] === CR) end--
    const bytes = source.subarray(start, end)
    if (!bytes.every(isWhitespace))
      records.push({ line, text: bytes.toString(), ...problemOf(bytes.toString(), false, maxRecordBytes) })
    if (newline === -1) break
    start = newline + 1
    line++
  }
  return records
}

const ndjsonFile = fc
  .record({
    lines: fc.array(
      fc.tuple(
        fc.oneof(
          fc.jsonValue({ maxDepth: 2 }).map((value) => JSON.stringify(value)),
          fc.string({ unit: 'grapheme', maxLength: 8 }).map((garbage) => garbage.replaceAll('\n', '')),
          fc.array(fc.constantFrom(' ', '\t', '\r'), { maxLength: 3 }).map((blank) => blank.join('')),
        ),
        fc.constantFrom('\n', '\r\n'),
      ),
      { maxLength: 10 },
    ),
    last: fc.string({ unit: 'grapheme-ascii', maxLength: 6 }).map((tail) => tail.replaceAll('\n', '')),
    bom: fc.boolean(),
  })
  .map(({ lines, last, bom }) => (bom ? BOM : '') + lines.map(([text, end]) => text + end).join('') + last)

t.test('NDJSON: one record per non-blank line, with its line number, as the rule says', async (t) => {
  fc.assert(
    fc.property(
      ndjsonFile,
      pieceSizes,
      fc.oneof(fc.constant(1 << 20), fc.integer({ min: 1, max: 30 })),
      (text, sizes, limit) => {
        const source = Buffer.from(text)
        assert.deepEqual(split(source, 'ndjson', sizes, limit).records, referenceNdjson(source, limit))
      },
    ),
    propertyParameters(200),
  )
  t.pass('the splitter follows the rule')
})

// --- JSON arrays -----------------------------------------------------------------------------

/** Strings that look like structure: quotes, escapes, brackets and commas inside strings. */
const trickyString = fc.constantFrom('"', '\\', '\\"', '\u0000', '],', '},{', '[', ',', '\n', 'a\\', '"]', 'é😀')
const element = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.dictionary(fc.oneof(fc.string(), trickyString), fc.oneof(trickyString, fc.jsonValue({ maxDepth: 1 })), {
    maxKeys: 3,
  }),
  fc.array(trickyString, { maxLength: 3 }),
)

interface JsonFile {
  text: string
  elements: { text: string; offset: number; value: unknown }[]
}

const jsonArray: fc.Arbitrary<JsonFile> = fc
  .record({
    values: fc.array(element, { maxLength: 6 }),
    spaces: fc.array(fc.constantFrom('', '', ' ', '\n', '\t', '\r\n', ' \n  '), { minLength: 1, maxLength: 7 }),
    bom: fc.boolean(),
  })
  .map(({ values, spaces, bom }) => {
    let turn = 0
    const next = () => spaces[turn++ % spaces.length] as string
    let text = `${bom ? BOM : ''}${next()}[${next()}`
    const elements = values.map((value, index) => {
      if (index > 0) text += `${next()},${next()}`
      const element = { text: jsonText(value, next), offset: Buffer.byteLength(text), value }
      text += element.text
      return element
    })
    text += `${next()}]${next()}`
    return { text, elements }
  })

const jsonWhitespace = (byte: number | undefined) => isWhitespace(byte)

/**
 * The rule, byte by byte and looking ahead: elements are separated by commas at depth 0 outside
 * strings (depth never below 0); a `]` at depth 0 ends the array unless the next non-blank byte
 * is a comma, when it is a stray token of the element (or an element of its own); a stray `}`
 * stays in its element; two commas in a row make an empty element.
 */
function referenceJson(source: Buffer, maxRecordBytes: number): { records: Found[]; warnings: string[] } {
  const records: Found[] = []
  let at = source.subarray(0, 3).toString() === BOM ? 3 : 0
  let line = 1
  while (jsonWhitespace(source[at])) if (source[at++] === LF) line++
  assert.equal(source[at], OPEN_BRACKET, 'the generator writes an array')
  let start = -1
  let startLine = 0
  let last = -1
  let depth = 0
  let inString = false
  let escaped = false
  const take = (unterminated: boolean) => {
    const text = source.subarray(start, last + 1).toString()
    records.push({ line: startLine, text, ...problemOf(text, unterminated, maxRecordBytes) })
    start = -1
  }
  for (at++; at < source.length; at++) {
    const byte = source[at] as number
    if (byte === LF) line++
    if (inString) {
      if (escaped) escaped = false
      else if (byte === BACKSLASH) escaped = true
      else if (byte === QUOTE) inString = false
      last = at
      continue
    }
    if (depth === 0 && byte === COMMA) {
      if (start === -1) records.push({ line, text: '' })
      else take(false)
      continue
    }
    if (depth === 0 && byte === CLOSE_BRACKET) {
      let next = at + 1
      while (jsonWhitespace(source[next])) next++
      if (source[next] !== COMMA) {
        if (start !== -1) take(false)
        return { records, warnings: next < source.length ? ['data after the end of the JSON array was ignored'] : [] }
      }
    }
    if (jsonWhitespace(byte)) continue
    if (start === -1) {
      start = at
      startLine = line
    }
    last = at
    if (byte === QUOTE) inString = true
    else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) depth++
    else if ((byte === CLOSE_BRACE || byte === CLOSE_BRACKET) && depth > 0) depth--
  }
  if (start !== -1) take(inString || depth > 0)
  return { records, warnings: ['the JSON array is not closed with "]"'] }
}

t.test('JSON: the elements of arrays of arbitrary values, with their lines, parse to the values', async (t) => {
  fc.assert(
    fc.property(jsonArray, pieceSizes, ({ text, elements }, sizes) => {
      const source = Buffer.from(text)
      const found = split(source, 'json', sizes)
      assert.deepEqual(
        found.records,
        elements.map((element) => ({ line: linesBefore(source, element.offset), text: element.text })),
      )
      assert.deepEqual(found.warnings, [])
      for (const [index, element] of elements.entries()) {
        assert.deepEqual(JSON.parse(found.records[index]?.text as string), JSON.parse(JSON.stringify(element.value)))
      }
    }),
    propertyParameters(200),
  )
  t.pass('every element is found whole')
})

t.test('JSON: with stray } ] , tokens, elements are those of the rule and splitting never throws', async (t) => {
  const strayToken = fc.constantFrom('}', ']', ',', '},', '],', ',,', ']]', '}}', ', ]')
  const slipped = jsonArray.chain(({ text }) =>
    fc.array(fc.tuple(fc.nat(), strayToken), { minLength: 1, maxLength: 4 }).map((strays) => {
      // After the opening bracket: before it, the source is not an array at all (refused at once).
      const characters = Array.from(text)
      const opening = characters.indexOf('[') + 1
      for (const [at, token] of strays) characters.splice(opening + (at % (characters.length - opening + 1)), 0, token)
      return characters.join('')
    }),
  )
  fc.assert(
    fc.property(
      slipped,
      pieceSizes,
      fc.oneof(fc.constant(1 << 20), fc.integer({ min: 8, max: 60 })),
      (text, sizes, limit) => {
        const source = Buffer.from(text)
        const expected = referenceJson(source, limit)
        const found = split(source, 'json', sizes, limit)
        assert.deepEqual(found.records, expected.records)
        assert.deepEqual(found.warnings, expected.warnings)
      },
    ),
    propertyParameters(400),
  )
  t.pass('the splitter follows the rule')
})
