import fc from 'fast-check'
import t from 'tap'
import { rowCounter } from '../../client/cli/export.ts'
import { propertyParameters } from '../property.ts'

// The CLI counts an export's rows as its bytes pass, in chunks that fall anywhere (inside a quoted
// field, between the bytes of one character). Whatever the rows hold, the count at the end is
// the number of rows, in each format as the service writes it.

const cell = fc.oneof(
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme', maxLength: 8 }) },
  {
    weight: 2,
    arbitrary: fc
      .array(fc.constantFrom(',', '"', '""', '\r', '\n', '\r\n', 'a', ' ', 'é', '😀', '[', ']', '{'), { maxLength: 6 })
      .map((parts) => parts.join('')),
  },
)
const rows = fc
  .integer({ min: 1, max: 4 })
  .chain((columns) => fc.array(fc.array(cell, { minLength: columns, maxLength: columns }), { maxLength: 40 }))
/** Cut points of a file into chunks, as fractions of its length. */
const cuts = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 })

/** A CSV cell as PostgreSQL's COPY writes it: quoted when it holds a delimiter, a quote or a line break. */
function csvCell(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

function file(format: 'csv' | 'ndjson' | 'json', data: string[][]): Buffer {
  const objects = data.map((row) => Object.fromEntries(row.map((value, index) => [`c${index}`, value])))
  if (format === 'csv') {
    const header = (data[0] ?? ['c0']).map((_, index) => `c${index}`).join(',')
    return Buffer.from(`${[header, ...data.map((row) => row.map(csvCell).join(','))].join('\n')}\n`)
  }
  if (format === 'ndjson') return Buffer.from(objects.map((object) => `${JSON.stringify(object)}\n`).join(''))
  // The service's JSON array: `[\n`, one element per line separated by `,\n`, then `\n]\n` (`[]\n` when empty).
  return Buffer.from(objects.length ? `[\n${objects.map((object) => JSON.stringify(object)).join(',\n')}\n]\n` : '[]\n')
}

function chunks(bytes: Buffer, fractions: number[]): Buffer[] {
  const points = [...new Set(fractions.map((fraction) => Math.floor(fraction * bytes.length)))].sort((a, b) => a - b)
  const pieces: Buffer[] = []
  let start = 0
  for (const point of [...points, bytes.length]) {
    pieces.push(bytes.subarray(start, point))
    start = point
  }
  return pieces
}

for (const format of ['csv', 'ndjson', 'json'] as const) {
  t.test(`${format}: the rows of any file, cut anywhere, are counted exactly`, async (t) => {
    fc.assert(
      fc.property(rows, cuts, (data, fractions) => {
        const counter = rowCounter(format)
        for (const piece of chunks(file(format, data), fractions)) counter.add(piece)
        return counter.final() === data.length
      }),
      propertyParameters(300),
    )
    t.pass('held for every example')
  })
}
