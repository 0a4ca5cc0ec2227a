import t, { type Test } from 'tap'
import { type RecordBatch, RecordSplitter, type SplitterOptions } from '../../../app/imports/record-splitter.ts'

interface Split {
  splitter: RecordSplitter
  batches: RecordBatch[]
  /** Each record as [record, line, text] (text from the batch chunk, or the problem). */
  records: [number, number, string][]
}

/** Splits `source`, pushed in pieces of `pieceSize` bytes (Infinity: all at once). */
function split(
  source: string | Buffer,
  options: Partial<SplitterOptions> & Pick<SplitterOptions, 'format'>,
  pieceSize = Infinity,
): Split {
  const bytes = typeof source === 'string' ? Buffer.from(source) : source
  const splitter = new RecordSplitter({ batchRecords: 1000, maxRecordBytes: 1 << 20, ...options })
  const batches: RecordBatch[] = []
  const step = Math.min(pieceSize, bytes.length || 1)
  for (let at = 0; at < bytes.length; at += step) batches.push(...splitter.push(bytes.subarray(at, at + step)))
  batches.push(...splitter.end())
  const records = batches.flatMap((batch) =>
    batch.spans.map((span, index): [number, number, string] => {
      if (span.problem === 'too_large') return [span.record, span.line, `<${span.problem}>`]
      const start = batch.starts[index] as number
      const text = batch.chunk.subarray(start, start + span.length).toString()
      return [span.record, span.line, span.problem ? `${text}<${span.problem}>` : text]
    }),
  )
  return { splitter, batches, records }
}

/** The same records, lines and offsets whatever the sizes of the pushed pieces. */
function assertChunkingIndependent(t: Test, source: string, options: Parameters<typeof split>[1]) {
  const whole = split(source, options)
  for (const size of [1, 2, 3, 5, 7, 64]) {
    const pieces = split(source, options, size)
    t.same(pieces.records, whole.records, `pieces of ${size} bytes give the same records`)
    t.same(
      pieces.batches.flatMap((batch) => batch.spans),
      whole.batches.flatMap((batch) => batch.spans),
    )
  }
}

t.test('CSV: the header is apart, records carry their physical line and byte span', async (t) => {
  const source = 'id,name\n1,Ann\n2,Bob\n'
  const { splitter, batches, records } = split(source, { format: 'csv' })
  t.equal(splitter.header?.bytes.toString(), 'id,name')
  t.same(splitter.header?.span, { record: 0, line: 1, offset: 0, length: 7 })
  t.same(records, [
    [1, 2, '1,Ann'],
    [2, 3, '2,Bob'],
  ])
  t.same(batches[0]?.spans[1], { record: 2, line: 3, offset: 14, length: 5 })
  t.equal(source.slice(14, 19), '2,Bob')
  t.equal(batches[0]?.chunk.toString(), '1,Ann\n2,Bob\n')
  t.equal(batches[0]?.endOffset, 19)
})

t.test('CSV: quoted fields may hold newlines, commas and escaped quotes; lines stay exact', async (t) => {
  const source = 'id,body\n1,"two\nlines, and ""quotes"""\n2,plain\n3,"a\r\nb"\n'
  const { records } = split(source, { format: 'csv' })
  t.same(records, [
    [1, 2, '1,"two\nlines, and ""quotes"""'],
    [2, 4, '2,plain'],
    [3, 5, '3,"a\r\nb"'],
  ])
  assertChunkingIndependent(t, source, { format: 'csv' })
})

t.test('CSV: CRLF line endings are detected and not part of records; a BOM is skipped', async (t) => {
  const source = '\uFEFFid,name\r\n1,Ann\r\n2,Bob'
  const { splitter, records, batches } = split(source, { format: 'csv' })
  t.equal(splitter.lineEnding, '\r\n')
  t.equal(splitter.header?.bytes.toString(), 'id,name')
  t.equal(splitter.header?.span.offset, 3)
  t.same(records, [
    [1, 2, '1,Ann'],
    [2, 3, '2,Bob'],
  ])
  t.equal(batches[0]?.endOffset, Buffer.byteLength(source))
  assertChunkingIndependent(t, source, { format: 'csv' })
})

t.test('CSV: blank lines are not records but count as lines', async (t) => {
  const { records } = split('id\n\n1\n\n\n2\n\n', { format: 'csv' })
  t.same(records, [
    [1, 3, '1'],
    [2, 6, '2'],
  ])
})

t.test('CSV: a quote inside an unquoted field is a literal and does not swallow the file', async (t) => {
  const { records } = split('id,name\n1,O"Brien\n2,Bob\n', { format: 'csv' })
  t.same(records, [
    [1, 2, '1,O"Brien'],
    [2, 3, '2,Bob'],
  ])
})

t.test('CSV: a quoted field still open at the end of the source is an unterminated record', async (t) => {
  const { records } = split('id,name\n1,Ann\n2,"Bob\n3,Cid\n', { format: 'csv' })
  t.same(records, [
    [1, 2, '1,Ann'],
    [2, 3, '2,"Bob\n3,Cid\n<unterminated>'],
  ])
})

t.test('a record longer than maxRecordBytes becomes a too_large span and splitting goes on', async (t) => {
  const long = 'x'.repeat(100)
  const source = `id,name\n1,Ann\n2,${long}\n3,Cid\n`
  const { records, batches } = split(source, { format: 'csv', maxRecordBytes: 50 })
  t.same(records, [
    [1, 2, '1,Ann'],
    [2, 3, '<too_large>'],
    [3, 4, '3,Cid'],
  ])
  t.same(batches[0]?.spans[1], { record: 2, line: 3, offset: 14, length: 102, problem: 'too_large' })
  t.equal(batches[0]?.starts[1], -1)
  t.equal(batches[0]?.chunk.toString(), '1,Ann\n3,Cid\n')
  assertChunkingIndependent(t, source, { format: 'csv', maxRecordBytes: 50 })
})

t.test('records are grouped in batches of batchRecords, and skipRecords passes over the first', async (t) => {
  const source = `id\n${Array.from({ length: 10 }, (_, index) => index + 1).join('\n')}\n`
  const { batches } = split(source, { format: 'csv', batchRecords: 4 })
  t.same(
    batches.map((batch) => batch.spans.map((span) => span.record)),
    [
      [1, 2, 3, 4],
      [5, 6, 7, 8],
      [9, 10],
    ],
  )
  t.same(batches[0]?.endLine, 5, 'the line the last record ends on')
  const resumed = split(source, { format: 'csv', batchRecords: 4, skipRecords: 8 })
  t.same(
    resumed.records.map(([record, line]) => [record, line]),
    [
      [9, 10],
      [10, 11],
    ],
  )
})

t.test('NDJSON: one record per line; blank and whitespace-only lines are skipped', async (t) => {
  const source = '{"a":1}\n\n   \n{"a":"x,\\"y"}\r\n{"broken"\n{"a":3}'
  const { records } = split(source, { format: 'ndjson' })
  t.same(records, [
    [1, 1, '{"a":1}'],
    [2, 4, '{"a":"x,\\"y"}'],
    [3, 5, '{"broken"'],
    [4, 6, '{"a":3}'],
  ])
  assertChunkingIndependent(t, source, { format: 'ndjson' })
})

t.test('JSON: the elements of a top-level array, with the line each starts on', async (t) => {
  const source =
    '[\n  {"a": 1, "b": [1, 2, {"c": "]}"}]},\n  {"a": "line\\nbreak \\" quote"},\n  {\n    "a": 3\n  }\n]\n'
  const { records } = split(source, { format: 'json' })
  t.same(records, [
    [1, 2, '{"a": 1, "b": [1, 2, {"c": "]}"}]}'],
    [2, 3, '{"a": "line\\nbreak \\" quote"}'],
    [3, 4, '{\n    "a": 3\n  }'],
  ])
  assertChunkingIndependent(t, source, { format: 'json' })
})

t.test('JSON: an empty array has no records; a malformed element is still one record', async (t) => {
  t.same(split('[ ]', { format: 'json' }).records, [])
  t.same(split('[{"a":1,,},{"a":2}]', { format: 'json' }).records, [
    [1, 1, '{"a":1,,}'],
    [2, 1, '{"a":2}'],
  ])
})

t.test('JSON: an object or anything but an array at the top is a source format error', async (t) => {
  t.throws(() => split('{"a": 1}', { format: 'json' }), {
    name: 'SourceFormatError',
    message:
      'a json import must be a top-level JSON array of records, not a single object (use ndjson for one object per line)',
  })
  t.throws(() => split('  "text"', { format: 'json' }), { name: 'SourceFormatError' })
  t.throws(() => split('', { format: 'json' }), { name: 'SourceFormatError', message: /empty/ })
})

t.test('JSON: an unclosed array keeps its complete elements; trailing data is ignored with a warning', async (t) => {
  const open = split('[{"a":1},\n{"a":2', { format: 'json' })
  t.same(open.records, [
    [1, 1, '{"a":1}'],
    [2, 2, '{"a":2<unterminated>'],
  ])
  t.same(open.splitter.warnings, ['the JSON array is not closed with "]"'])
  const trailing = split('[{"a":1}] garbage', { format: 'json' })
  t.same(trailing.records, [[1, 1, '{"a":1}']])
  t.same(trailing.splitter.warnings, ['data after the end of the JSON array was ignored'])
})

t.test('JSON: a stray } at depth 0 makes its element a parse error; the next comma resynchronises', async (t) => {
  // The element's text keeps the stray bracket, so that JSON.parse refuses it (issue 8, finding 3).
  const source = '[{"a":1}},\n{"a":[2}]},\n{"a":3}]'
  t.same(split(source, { format: 'json' }).records, [
    [1, 1, '{"a":1}}'],
    [2, 2, '{"a":[2}]}'],
    [3, 3, '{"a":3}'],
  ])
  assertChunkingIndependent(t, source, { format: 'json' })
})

t.test('JSON: a stray token between elements is an element of its own; two commas make an empty one', async (t) => {
  const source = '[{"a":1},\n},\n{"a":2},,\n{"a":3}\n]\n'
  const { records, splitter } = split(source, { format: 'json' })
  t.same(records, [
    [1, 1, '{"a":1}'],
    [2, 2, '}'],
    [3, 3, '{"a":2}'],
    [4, 3, ''],
    [5, 4, '{"a":3}'],
  ])
  t.same(splitter.warnings, [])
  assertChunkingIndependent(t, source, { format: 'json' })
})

t.test('JSON: a ] followed by a comma does not end the array: it is a stray token', async (t) => {
  const source = '[{"a":1}] ,\n{"a":2},\n],\n{"a":3}]\n'
  const { records, splitter } = split(source, { format: 'json' })
  t.same(records, [
    [1, 1, '{"a":1}]'],
    [2, 2, '{"a":2}'],
    [3, 3, ']'],
    [4, 4, '{"a":3}'],
  ])
  t.same(splitter.warnings, [])
  assertChunkingIndependent(t, source, { format: 'json' })
  const closed = split('[{"a":1}]\n\n ]', { format: 'json' })
  t.same(closed.records, [[1, 1, '{"a":1}']], 'a ] followed by anything else ends the array')
  t.same(closed.splitter.warnings, ['data after the end of the JSON array was ignored'])
  t.same(split('[{"a":1},]', { format: 'json' }).records, [[1, 1, '{"a":1}']], 'a trailing comma is tolerated')
})

t.test('a UTF-8 BOM is skipped whatever the size of the first pieces pushed', async (t) => {
  for (const format of ['csv', 'ndjson', 'json'] as const) {
    const body = { csv: 'id\n1\n', ndjson: '{"a":1}\n', json: '[{"a":1}]' }[format]
    const whole = split(`\uFEFF${body}`, { format })
    t.equal(whole.records[0]?.[2], format === 'csv' ? '1' : '{"a":1}')
    for (const size of [1, 2]) {
      t.same(split(`\uFEFF${body}`, { format }, size).records, whole.records, `${format}, pieces of ${size} bytes`)
    }
  }
  t.same(split('\uFEFF', { format: 'csv' }, 1).records, [], 'a file that is only a BOM has no records')
  t.same(split('\xEF', { format: 'ndjson' }, 1).records.length, 1, 'the start of a BOM alone is content')
})

t.test('the record limit counts the record alone: not its CRLF, nor whitespace after a JSON element', async (t) => {
  const exact = 'x'.repeat(10)
  const csv = `id\r\n${exact}\r\n${exact}x\r\n`
  t.same(split(csv, { format: 'csv', maxRecordBytes: 10 }).records, [
    [1, 2, exact],
    [2, 3, '<too_large>'],
  ])
  assertChunkingIndependent(t, csv, { format: 'csv', maxRecordBytes: 10 })
  const json = `[${JSON.stringify(exact.slice(2))}   ,\n${JSON.stringify(exact.slice(1))}  ]`
  t.same(split(json, { format: 'json', maxRecordBytes: 10 }).records, [
    [1, 1, `"${exact.slice(2)}"`],
    [2, 2, '<too_large>'],
  ])
  assertChunkingIndependent(t, json, { format: 'json', maxRecordBytes: 10 })
})

t.test('NDJSON: a whitespace-only line is blank however long, also at the end of the file', async (t) => {
  const source = `{"a":1}\n${' '.repeat(100)}\r\n{"a":2}\n \t\r`
  t.same(split(source, { format: 'ndjson', maxRecordBytes: 50 }).records, [
    [1, 1, '{"a":1}'],
    [2, 3, '{"a":2}'],
  ])
  assertChunkingIndependent(t, source, { format: 'ndjson', maxRecordBytes: 50 })
})
