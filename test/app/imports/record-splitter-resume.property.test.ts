import assert from 'node:assert/strict'
import fc from 'fast-check'
import t from 'tap'
import {
  type ImportFormat,
  type RecordBatch,
  RecordSplitter,
  type SplitterOptions,
} from '../../../app/imports/record-splitter.ts'
import { propertyParameters } from '../../property.ts'
import { jsonText, linesBefore } from './splitter-text.ts'

// A resumed job starts reading its source at a batch's resume point (a ranged read) instead of
// byte 0. On generated sources (near-valid CSV, NDJSON and JSON arrays, with stray tokens, BOMs,
// CRLF, blank lines, over-long records), cut in batches of every size and pushed in pieces of
// random sizes: a new splitter started at ANY batch's resume point, fed the rest of the source,
// emits exactly the batches the uninterrupted splitter emitted after that batch, and the same
// warnings for the rest of the source.

interface Emitted {
  batch: RecordBatch
  /** How many warnings the splitter had before and after the call that returned the batch. */
  warningsBefore: number
  warningsAfter: number
}

interface Run {
  splitter: RecordSplitter
  emitted: Emitted[]
}

function run(source: Buffer, options: SplitterOptions, sizes: readonly number[]): Run {
  const splitter = new RecordSplitter(options)
  const emitted: Emitted[] = []
  const take = (call: () => RecordBatch[]) => {
    const warningsBefore = splitter.warnings.length
    const batches = call()
    for (const batch of batches) emitted.push({ batch, warningsBefore, warningsAfter: splitter.warnings.length })
  }
  for (let at = 0, piece = 0; at < source.length; piece++) {
    const size = sizes[piece % sizes.length] as number
    take(() => splitter.push(source.subarray(at, at + size)))
    at += size
  }
  take(() => splitter.end())
  return { splitter, emitted }
}

/** All a batch says, in plain values (Buffers and typed arrays compare as arrays). */
const plain = ({ spans, chunk, starts, endOffset, endLine, resume }: RecordBatch) => ({
  spans,
  chunk: chunk.toString('latin1'),
  starts: Array.from(starts),
  endOffset,
  endLine,
  resume,
})

// --- Generators ------------------------------------------------------------------------------

const pieceSizes = fc.oneof(
  fc.constant([1]),
  fc.array(fc.integer({ min: 1, max: 24 }), { minLength: 1, maxLength: 5 }),
  fc.constant([1 << 20]),
)

const lineEnd = fc.constantFrom('\n', '\r\n')

/** Random local slips: tokens inserted at random places, or characters removed. */
function withSlips(text: string, tokens: readonly string[]): fc.Arbitrary<string> {
  return fc
    .array(fc.record({ at: fc.nat(), token: fc.constantFrom(...tokens), remove: fc.boolean() }), { maxLength: 3 })
    .map((slips) => {
      const characters = Array.from(text)
      for (const { at, token, remove } of slips) {
        characters.splice(at % (characters.length + 1), remove ? 1 : 0, token)
      }
      return characters.join('')
    })
}

const csvCell = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('', 'a', 'bc', 'é😀', ' x ', 'O"Brien', '1') },
  { weight: 2, arbitrary: fc.constantFrom('"a\nb"', '"a\r\nb"', '"q""q"', '","', '""', '"\n"', '"x\n\ny"') },
  { weight: 1, arbitrary: fc.constantFrom('x'.repeat(30), '"long\n'.concat('y'.repeat(20), '"')) },
)

/** CSV with quoted newlines, mixed line ends, blank lines, a BOM, and slips (stray quotes, CRs). */
const csvSource = fc
  .record({
    rows: fc.array(fc.tuple(fc.array(csvCell, { minLength: 1, maxLength: 3 }), lineEnd, fc.nat(4)), {
      minLength: 1,
      maxLength: 20,
    }),
    last: fc.constantFrom('', '', 'tail', '\r', ' '),
    bom: fc.boolean(),
  })
  .map(
    ({ rows, last, bom }) =>
      (bom ? '\uFEFF' : '') +
      rows.map(([cells, end, blank]) => (blank === 0 ? end : '') + cells.join(',') + end).join('') +
      last,
  )
  .chain((text) => withSlips(text, ['"', '\r', '\n', '\r\n', ',', '"\n']))

/** NDJSON with blank and whitespace-only lines, CRLF, garbage lines, a BOM, a last line without end. */
const ndjsonSource = fc
  .record({
    lines: fc.array(
      fc.tuple(
        fc.oneof(
          fc.jsonValue({ maxDepth: 2 }).map((value) => JSON.stringify(value)),
          fc.constantFrom('', ' ', '\t \r', '{"broken"', '"x\r"'),
          fc.string({ unit: 'grapheme', maxLength: 6 }).map((garbage) => garbage.replaceAll('\n', '')),
        ),
        lineEnd,
      ),
      { maxLength: 20 },
    ),
    last: fc.constantFrom('', '', '{"a":1}', ' \t', '\r'),
    bom: fc.boolean(),
  })
  .map(({ lines, last, bom }) => (bom ? '\uFEFF' : '') + lines.map(([text, end]) => text + end).join('') + last)

const jsonElement = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom('],', '"\\"', 'a\nb', 'x'.repeat(40)),
  fc.array(fc.constantFrom('"', ']', '[', ',', '\n'), { maxLength: 3 }),
)

/**
 * JSON arrays, pretty-printed or with newlines before commas; with stray `]`, `}` and `,` tokens,
 * data after the array, or the array left open.
 */
const jsonSource = fc
  .record({
    values: fc.array(jsonElement, { maxLength: 12 }),
    spaces: fc.array(fc.constantFrom('', '', ' ', '\n', '\r\n', ' \n  '), { minLength: 1, maxLength: 6 }),
    pretty: fc.constantFrom(undefined, 2, '\t'),
    bom: fc.boolean(),
    tail: fc.constantFrom('', '', '\n', ' x', '\n]', ', {"a":1}]', 'CUT'),
  })
  .map(({ values, spaces, pretty, bom, tail }) => {
    let turn = 0
    const next = () => spaces[turn++ % spaces.length] as string
    const array = pretty === undefined ? jsonText(values, next) : JSON.stringify(values, null, pretty)
    // 'CUT': the array is left open (the source ends inside it).
    const body = tail === 'CUT' ? array.slice(0, Math.ceil(array.length / 2) + 1) : array + tail
    return (bom ? '\uFEFF' : '') + body
  })
  .chain((text) => {
    const opening = text.indexOf('[') + 1
    // After the opening bracket: before it, the source is not an array at all.
    // A U+FEFF after a comma is an element's first byte, not a BOM: a resumed splitter starts mid-source.
    return withSlips(text.slice(opening), [']', '}', ',', '],', ' ] ,', ',,', ']]', ',\uFEFF']).map(
      (rest) => text.slice(0, opening) + rest,
    )
  })

const splitting = fc.record({
  batchRecords: fc.integer({ min: 1, max: 7 }),
  maxRecordBytes: fc.oneof(fc.constant(1 << 20), fc.integer({ min: 1, max: 40 })),
  maxBatchBytes: fc.oneof(fc.constant(8 << 20), fc.integer({ min: 1, max: 64 })),
  skipRecords: fc.oneof(fc.constant(0), fc.nat(4)),
})

// --- The property ----------------------------------------------------------------------------

function checkResumes(
  format: ImportFormat,
  text: string,
  splittingOptions: Omit<SplitterOptions, 'format'>,
  sizes: readonly number[],
  resumedSizes: readonly number[],
): void {
  const source = Buffer.from(text)
  const options = { format, ...splittingOptions }
  const whole = run(source, options, sizes)
  const { splitter } = whole
  const batches = whole.emitted.map(({ batch }) => plain(batch))
  for (const [index, { batch, warningsBefore, warningsAfter }] of whole.emitted.entries()) {
    // Every format has a resume point after each batch, also the last.
    assert.ok(batch.resume, `batch ${index} has a resume point`)
    assert.ok(batch.resume.offset <= source.length)
    assert.equal(batch.resume.line, linesBefore(source, batch.resume.offset), 'the line at the offset')
    const last = batch.spans.at(-1)
    assert.ok(last)
    const resumeFrom = {
      ...batch.resume,
      records: last.record,
      lineEnding: splitter.lineEnding,
      ...(format === 'csv' ? { header: splitter.header } : {}),
    }
    const resumed = run(source.subarray(batch.resume.offset), { ...options, resumeFrom }, resumedSizes)
    assert.deepEqual(
      resumed.emitted.map(({ batch }) => plain(batch)),
      batches.slice(index + 1),
      `resumed after batch ${index} at ${JSON.stringify(batch.resume)}`,
    )
    // The warnings found after the batch: those of the uninterrupted splitter from some point
    // during the call that returned it (before it, the batch was not out; after it, it was). The
    // point is just after the batch's last record; end() may flush the last batch after warnings
    // found since, which the resumed splitter then finds again.
    const found = resumed.splitter.warnings
    const from = splitter.warnings.length - found.length
    const isLast = index === whole.emitted.length - 1
    assert.ok(from >= (isLast ? 0 : warningsBefore) && from <= warningsAfter, `warnings ${JSON.stringify(found)}`)
    assert.deepEqual(found, splitter.warnings.slice(from))
    assert.equal(resumed.splitter.lineEnding, splitter.lineEnding)
    assert.equal(resumed.splitter.records, splitter.records)
  }
}

const sources = { csv: csvSource, ndjson: ndjsonSource, json: jsonSource }

for (const format of ['csv', 'ndjson', 'json'] as const) {
  t.test(`${format}: a splitter resumed at any batch's resume point emits the batches that followed it`, async (t) => {
    fc.assert(
      fc.property(sources[format], splitting, pieceSizes, pieceSizes, (text, options, sizes, resumedSizes) =>
        checkResumes(format, text, options, sizes, resumedSizes),
      ),
      propertyParameters(500),
    )
    t.pass('the resumed splitters go on as the uninterrupted one')
  })
}
