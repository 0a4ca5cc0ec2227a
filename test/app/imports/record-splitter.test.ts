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

// --- Resuming at a batch's resume point --------------------------------------------------------

type Resumable = Parameters<typeof split>[1]

/** What a batch says, in plain values. */
const plain = (batch: RecordBatch) => ({ ...batch, chunk: batch.chunk.toString(), starts: Array.from(batch.starts) })

/** Splits the rest of `source` with a splitter resumed after `batch`, one of `whole`'s. */
function resume(source: string | Buffer, options: Resumable, whole: Split, batch: RecordBatch, pieceSize = Infinity) {
  const bytes = typeof source === 'string' ? Buffer.from(source) : source
  if (!batch.resume) throw new Error('the batch has no resume point')
  const resumeFrom = {
    ...batch.resume,
    records: batch.spans.at(-1)?.record ?? 0,
    header: whole.splitter.header,
    lineEnding: whole.splitter.lineEnding,
  }
  return split(bytes.subarray(batch.resume.offset), { ...options, resumeFrom }, pieceSize)
}

/** Resumed after any batch, in pieces of any size, a splitter emits the batches that followed it. */
function assertResumable(t: Test, source: string, options: Resumable) {
  const whole = split(source, options)
  t.ok(whole.batches.length > 1, 'more than one batch')
  for (const [index, batch] of whole.batches.entries()) {
    t.ok(batch.resume, `batch ${index} has a resume point`)
    for (const size of [Infinity, 1, 2, 5]) {
      const resumed = resume(source, options, whole, batch, size)
      t.same(resumed.batches.map(plain), whole.batches.slice(index + 1).map(plain), `after batch ${index}, ${size}`)
      t.same(resumed.splitter.lineEnding, whole.splitter.lineEnding)
      const warnings = resumed.splitter.warnings
      t.same(warnings, whole.splitter.warnings.slice(whole.splitter.warnings.length - warnings.length))
    }
  }
  return whole
}

t.test('resume: CSV with LF goes on at the line end of the last record of the batch', async (t) => {
  const source = 'id,name\n1,Ann\n2,Bob\n\n3,Cid\n'
  const options = { format: 'csv', batchRecords: 1 } as const
  const whole = assertResumable(t, source, options)
  t.same(
    whole.batches.map((batch) => batch.resume),
    [
      { offset: 13, line: 2 },
      { offset: 19, line: 3 },
      { offset: 26, line: 5 },
    ],
  )
  const first = whole.batches[0] as RecordBatch
  t.equal(first.endOffset, 13, 'the resume point is endOffset in CSV')
  t.same(resume(source, options, whole, first).records, [
    [2, 3, '2,Bob'],
    [3, 5, '3,Cid'],
  ])
})

t.test('resume: CSV with CRLF, a BOM and quoted fields holding line ends', async (t) => {
  const source = '\uFEFFid,body\r\n1,"two\r\nlines"\r\n2,"a\nb"\r\n3,x\r\n4,"""q"""'
  const options = { format: 'csv', batchRecords: 1 } as const
  const whole = assertResumable(t, source, options)
  const first = whole.batches[0] as RecordBatch
  t.same(first.resume, { offset: 26, line: 3 }, 'at the CR of the CRLF')
  t.equal(Buffer.from(source).subarray(25, 28).toString(), '"\r\n', 'offsets count the BOM bytes')
  // Without lineEnding, a resumed splitter takes it from the batch's own line end.
  const resumed = split(Buffer.from(source).subarray(26), {
    ...options,
    resumeFrom: { offset: 26, line: 3, records: 1, header: whole.splitter.header },
  })
  t.equal(resumed.splitter.lineEnding, '\r\n')
  t.same(resumed.records, [
    [2, 4, '2,"a\nb"'],
    [3, 6, '3,x'],
    [4, 7, '4,"""q"""'],
  ])
  t.same(resumed.splitter.header, whole.splitter.header, 'the header passed in, not a record read as it')
})

t.test('resume: lineEnding follows the first line end of the file, also when the rest differs', async (t) => {
  const source = 'id\n1\r\n2\r\n3\r\n'
  const whole = assertResumable(t, source, { format: 'csv', batchRecords: 1 })
  t.equal(whole.splitter.lineEnding, '\n')
  const first = whole.batches[0] as RecordBatch
  const resumeFrom = {
    ...(first.resume as { offset: number; line: number }),
    records: 1,
    header: whole.splitter.header,
  }
  const learned = split(Buffer.from(source).subarray(resumeFrom.offset), { format: 'csv', resumeFrom })
  t.equal(learned.splitter.lineEnding, '\r\n', 'without lineEnding: that of the batch line end')
})

t.test('resume: a CSV resumeFrom without the header is refused', async (t) => {
  t.throws(
    () =>
      new RecordSplitter({
        format: 'csv',
        batchRecords: 1,
        maxRecordBytes: 10,
        resumeFrom: { offset: 3, line: 2, records: 1 },
      }),
    {
      message: /header/,
    },
  )
})

t.test('resume: NDJSON with blank and whitespace-only lines, CRLF and LF', async (t) => {
  const source = '{"a":1}\n\n   \n{"a":2}\r\n\r\n \t\r\n{"a":3}\n{"a":4}'
  const whole = assertResumable(t, source, { format: 'ndjson', batchRecords: 1 })
  t.same(
    whole.batches.map((batch) => batch.resume),
    [
      { offset: 7, line: 1 },
      { offset: 20, line: 4 },
      { offset: 35, line: 7 },
      { offset: 43, line: 8 },
    ],
  )
  t.same(
    whole.batches.map((batch) => batch.endOffset),
    [7, 20, 35, 43],
  )
})

t.test('resume: JSON goes on after the comma, whatever newlines come before it', async (t) => {
  const source = '[\n  {"a": 1}\n  ,\n  {"a": 2}\n\n  ,{"a":\n3},\n{"a":4}\n]\n'
  const options = { format: 'json', batchRecords: 1 } as const
  const whole = assertResumable(t, source, options)
  const first = whole.batches[0] as RecordBatch
  t.equal(first.endOffset, 12, 'just after the element')
  t.same(first.resume, { offset: 16, line: 3 }, 'just after its comma, two lines on')
  t.equal(source.slice(12, 16), '\n  ,')
  t.same(resume(source, options, whole, first).records, [
    [2, 4, '{"a": 2}'],
    [3, 6, '{"a":\n3}'],
    [4, 8, '{"a":4}'],
  ])
  // The last element is closed by the `]`: a splitter resumed at the `]` ends the array the same.
  t.same(whole.batches.at(-1)?.resume, { offset: source.lastIndexOf(']'), line: 9 })
})

t.test('resume: pretty-printed JSON arrays, with a BOM', async (t) => {
  const values = [{ a: 1, b: [1, 2] }, 'two\nlines', null, [], { c: { d: '],' } }]
  for (const indent of [2, '\t']) {
    assertResumable(t, `\uFEFF${JSON.stringify(values, null, indent)}\n`, { format: 'json', batchRecords: 2 })
  }
})

t.test('resume: JSON with stray ] tokens, data after the array or no closing ]', async (t) => {
  const stray = '[{"a":1}] ,\n{"a":2},\n],\n{"a":3}]\n'
  const whole = assertResumable(t, stray, { format: 'json', batchRecords: 1 })
  t.same(
    whole.batches.map((batch) => batch.resume),
    [
      { offset: 11, line: 1 },
      { offset: 20, line: 2 },
      { offset: 23, line: 3 },
      { offset: 31, line: 4 },
    ],
    'after the comma that made a ] stray; at the ] that ends the array',
  )
  const trailing = assertResumable(t, '[{"a":1},{"a":2}]\n] x', { format: 'json', batchRecords: 1 })
  t.same(trailing.splitter.warnings, ['data after the end of the JSON array was ignored'])
  const open = assertResumable(t, '[{"a":1},\n{"a":2', { format: 'json', batchRecords: 1 })
  t.same(open.splitter.warnings, ['the JSON array is not closed with "]"'])
  t.same(open.batches.at(-1)?.resume, { offset: 16, line: 2 }, 'at the end of the source')
  assertResumable(t, '[{"a":1},\n{"a":2},\n', { format: 'json', batchRecords: 1 })
})

t.test('resume: a U+FEFF after a JSON comma is part of the next element, not a BOM', async (t) => {
  const source = '[1,\uFEFF2,3]'
  const whole = assertResumable(t, source, { format: 'json', batchRecords: 1 })
  t.same(whole.records[1], [2, 1, '\uFEFF2'])
})

t.test('resume: after too_large records, and batches cut by maxBatchBytes', async (t) => {
  const long = 'x'.repeat(40)
  for (const [format, source] of [
    ['csv', `id\r\n${long}\r\n1\r\n"${long}\n"\r\n2\r\n${long}`],
    ['ndjson', `"${long}"\n1\n\n"${long}"\r\n2\n"${long}"`],
    ['json', `[\n"${long}"\n,1,\n"${long}"\n,2,"${long}"]`],
  ] as const) {
    const whole = assertResumable(t, source, { format, batchRecords: 2, maxRecordBytes: 20 })
    t.ok(
      whole.batches.some((batch) => batch.spans.at(-1)?.problem === 'too_large'),
      `${format}: a batch ends with a too_large record`,
    )
    assertResumable(t, source, { format, batchRecords: 100, maxRecordBytes: 50, maxBatchBytes: 10 })
  }
})

t.test(
  'resume: record numbers go on from resumeFrom.records, and skipRecords still counts from the start',
  async (t) => {
    const source = `id\n${Array.from({ length: 10 }, (_, index) => index + 1).join('\n')}\n`
    const options = { format: 'csv', batchRecords: 4 } as const
    const whole = split(source, options)
    const first = whole.batches[0] as RecordBatch
    const resumed = resume(source, options, whole, first)
    t.same(
      resumed.batches.map((batch) => batch.spans.map((span) => span.record)),
      [
        [5, 6, 7, 8],
        [9, 10],
      ],
    )
    const skipping = resume(source, { ...options, skipRecords: 6 }, whole, first)
    t.same(
      skipping.batches.map((batch) => batch.spans.map((span) => [span.record, span.line])),
      [
        [
          [7, 8],
          [8, 9],
          [9, 10],
          [10, 11],
        ],
      ],
      'records 5 and 6 are passed over, as from the start of the source',
    )
    t.equal(skipping.splitter.records, 10)
  },
)
