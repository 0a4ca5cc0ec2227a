import t from 'tap'
import { RecordSplitter } from '../../../app/imports/record-splitter.ts'
import { parseCsvRecord } from '../../../app/workers/import-batch.ts'

// The one CSV rule (docs/api.md, "Records and errors") held by both of its halves: the splitter
// (where records end, on the job's thread) and parseCsvRecord (the fields, on a worker thread).
// Each case is a source after the header `a,b`, with the records the splitter must cut, each
// with its start line, its text (or the defect the splitter reports) and what the parser makes
// of it: the two fields, or its parse_error message.

type Parsed = [string, string] | string
type Expected = [line: number, text: string, parsed: Parsed][]

const HEADER = ['a', 'b']

/** [line, text or `text<problem>`, parsed] of each record, the source pushed in pieces of `size` bytes. */
function records(source: Buffer, size: number): Expected {
  const splitter = new RecordSplitter({ format: 'csv', batchRecords: 1000, maxRecordBytes: 1 << 20 })
  const batches = []
  for (let at = 0; at < source.length; at += size) batches.push(...splitter.push(source.subarray(at, at + size)))
  batches.push(...splitter.end())
  if (splitter.header?.bytes.toString() !== HEADER.join(',')) {
    throw new Error(`the header is ${JSON.stringify(splitter.header?.bytes.toString())}`)
  }
  return batches.flatMap((batch) =>
    batch.spans.map((span, index): Expected[number] => {
      const start = batch.starts[index] as number
      const text = batch.chunk.subarray(start, start + span.length).toString()
      if (span.problem) return [span.line, `${text}<${span.problem}>`, 'not parsed']
      const parsed = parseCsvRecord(text, HEADER)
      return [span.line, text, typeof parsed === 'string' ? parsed : [parsed.a as string, parsed.b as string]]
    }),
  )
}

const cases: [name: string, body: string, expected: Expected][] = [
  [
    'a doubled quote inside an unquoted field is two ordinary characters (issue 8, finding 3)',
    'a@x.com,Bob 12""\nb@x.com,Ann\n',
    [
      [2, 'a@x.com,Bob 12""', ['a@x.com', 'Bob 12""']],
      [3, 'b@x.com,Ann', ['b@x.com', 'Ann']],
    ],
  ],
  [
    'quotes anywhere but at the start of a field are ordinary characters',
    'O"Brien,x"y""z"\n2,"""\n',
    [
      [2, 'O"Brien,x"y""z"', ['O"Brien', 'x"y""z"']],
      [3, '2,"""\n<unterminated>', 'not parsed'],
    ],
  ],
  [
    'a quote at the start of a field opens it; "" inside is a quote; the closing quote ends it',
    '"x,y","say ""hi"""\n"",""\n"""","a""b"\n',
    [
      [2, '"x,y","say ""hi"""', ['x,y', 'say "hi"']],
      [3, '"",""', ['', '']],
      [4, '"""","a""b"', ['"', 'a"b']],
    ],
  ],
  [
    'a quoted field may hold line breaks; the next record starts on its own physical line',
    '1,"two\nlines\r\nthree"\n2,b\n',
    [
      [2, '1,"two\nlines\r\nthree"', ['1', 'two\nlines\r\nthree']],
      [5, '2,b', ['2', 'b']],
    ],
  ],
  [
    'text after a closing quote is a parse_error for its record and never moves a record boundary',
    '1,"x"y\n2,"x"y""\n3,"x" "y"\n4,"x"""z\n5,b\n',
    [
      [2, '1,"x"y', 'a quoted field is followed by other text in field 2'],
      [3, '2,"x"y""', 'a quoted field is followed by other text in field 2'],
      [4, '3,"x" "y"', 'a quoted field is followed by other text in field 2'],
      [5, '4,"x"""z', 'a quoted field is followed by other text in field 2'],
      [6, '5,b', ['5', 'b']],
    ],
  ],
  [
    'CRLF ends a record, after a closing quote too; a CR elsewhere is an ordinary character',
    '1,"x"\r\n2,y\rz\r\n3,\r\r\n4,"x"\rz\n5,b\r',
    [
      [2, '1,"x"', ['1', 'x']],
      [3, '2,y\rz', ['2', 'y\rz']],
      [4, '3,\r', ['3', '\r']],
      [5, '4,"x"\rz', 'a quoted field is followed by other text in field 2'],
      [6, '5,b\r', ['5', 'b\r']],
    ],
  ],
  [
    'blank lines (LF or CRLF) are not records; a line of one empty quoted field is',
    '\n\r\n1,b\n\n"",\n',
    [
      [4, '1,b', ['1', 'b']],
      [6, '"",', ['', '']],
    ],
  ],
  ['a quote as the very last byte of an unquoted field is ordinary', '1,b"', [[2, '1,b"', ['1', 'b"']]]],
  ['a closing quote as the very last byte closes its field', '1,"b"', [[2, '1,"b"', ['1', 'b']]]],
  [
    'a quoted field still open at the end of the file runs to it: one unterminated record',
    '1,"b\n2,c\n3,""d\n',
    [[2, '1,"b\n2,c\n3,""d\n<unterminated>', 'not parsed']],
  ],
  [
    'an opening quote as the very last byte is unterminated',
    '1,b\n2,"',
    [
      [2, '1,b', ['1', 'b']],
      [3, '2,"<unterminated>', 'not parsed'],
    ],
  ],
  [
    'a record with the wrong number of fields is a parse_error; commas in quotes do not count',
    '1\n1,2,3\n"1,2",3\n1,\n',
    [
      [2, '1', 'the record has 1 fields; the header has 2'],
      [3, '1,2,3', 'the record has 3 fields; the header has 2'],
      [4, '"1,2",3', ['1,2', '3']],
      [5, '1,', ['1', '']],
    ],
  ],
]

for (const [name, body, expected] of cases) {
  t.test(name, async (t) => {
    for (const bom of ['', '\uFEFF']) {
      const source = Buffer.from(`${bom}a,b\n${body}`)
      for (const size of [1, 2, 3, 5, 8, source.length]) {
        t.same(records(source, size), expected, `${bom ? 'with a BOM, ' : ''}pushed in pieces of ${size} bytes`)
      }
    }
  })
}

t.test('the splitter never cuts more records than the file has lines', async (t) => {
  // Worst case for a rule that lets a quote re-open quotes: every field a run of quotes.
  const body = Array.from({ length: 200 }, (_, index) => `${index}${'"'.repeat(index % 5)},x${'"'.repeat(index % 3)}`)
  const source = Buffer.from(`a,b\n${body.join('\n')}\n`)
  for (const size of [1, 7, 4096]) {
    const found = records(source, size)
    t.equal(found.length, 200, `pieces of ${size} bytes`)
    t.same(
      found.map(([line]) => line),
      body.map((_, index) => index + 2),
    )
  }
})
