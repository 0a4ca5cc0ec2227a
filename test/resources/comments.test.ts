import t from 'tap'
import type { FieldError, RecordOutcome } from '../../app/workers/fields.ts'
import comments, { CommentRecordSchema, commentColumns } from '../../resources/comments.ts'

const { validate } = comments

// Per-record validation of comments (docs/contract.md §2), as the import workers run it: pure, no database.

const id = '9b2f6c1e-5d4a-4c3b-8a7f-1e2d3c4b5a69'
const articleId = '6ec0bd7f-11c0-43da-975e-2a8ad9ebae0b'
const userId = '0f8fad5b-d9cb-469f-a165-70867728950e'
const comment = {
  id,
  article_id: articleId,
  user_id: userId,
  body: 'Great article!\nThanks.',
  created_at: '2024-03-01T09:30:00.654321+02:00',
}

const CHARACTERS_MESSAGE = 'must be at most 10,000 characters'
const WORDS_MESSAGE = 'must have at most 500 words'

function errorsOf(outcome: RecordOutcome): FieldError[] {
  if (outcome.ok) throw new Error(`expected errors, got the row ${JSON.stringify(outcome.row)}`)
  return outcome.errors
}

function rowOf(outcome: RecordOutcome): Record<string, unknown> {
  if (!outcome.ok) throw new Error(`expected a row, got ${JSON.stringify(outcome.errors)}`)
  return outcome.row
}

t.test('the record schema documents one property per CSV column, in column order', async (t) => {
  t.strictSame(Object.keys(CommentRecordSchema.properties), [...commentColumns])
  t.strictSame(commentColumns, ['id', 'article_id', 'user_id', 'body', 'created_at'])
  t.equal(CommentRecordSchema.$id, 'CommentRecord')
  t.equal(CommentRecordSchema.additionalProperties, true)
  t.strictSame(CommentRecordSchema.required, ['id', 'article_id', 'user_id', 'body'])
  for (const [name, property] of Object.entries(CommentRecordSchema.properties)) {
    t.ok(property.description, `${name} has a description`)
  }
  t.equal(CommentRecordSchema.properties.body.maxLength, 10_000, 'compiling the check leaves the schema as documented')
})

t.test('a valid record gives its row, from CSV and from JSON alike', async (t) => {
  t.strictSame(rowOf(validate(comment, 'csv')), comment)
  t.strictSame(rowOf(validate(comment, 'json')), comment)
})

t.test('UUIDs are trimmed and put in lower case, the body kept exactly as given', async (t) => {
  const input = {
    id: ` ${id.toUpperCase()} `,
    article_id: articleId.toUpperCase(),
    user_id: `\t${userId.toUpperCase()}`,
    body: '  padded body \n',
    created_at: ` ${comment.created_at} `,
  }
  t.strictSame(rowOf(validate(input, 'csv')), { ...comment, body: '  padded body \n' })
})

t.test('created_at may be absent: missing, empty or JSON null', async (t) => {
  const { created_at: _, ...required } = comment
  t.strictSame(rowOf(validate(required, 'csv')), { ...required, created_at: undefined })
  t.strictSame(rowOf(validate({ ...required, created_at: '' }, 'csv')), { ...required, created_at: undefined })
  t.strictSame(rowOf(validate({ ...required, created_at: null }, 'json')), { ...required, created_at: undefined })
})

t.test('id, article_id, user_id and body are required, from CSV and from JSON', async (t) => {
  const required = (field: string) => ({ field, code: 'required', message: 'is required' })
  const expected = [required('id'), required('article_id'), required('user_id'), required('body')]
  t.strictSame(errorsOf(validate({ created_at: comment.created_at }, 'csv')), expected, 'missing columns')
  const empty = { id: '', article_id: ' ', user_id: '', body: ' \n ' }
  t.strictSame(errorsOf(validate(empty, 'csv')), expected, 'empty CSV cells')
  t.strictSame(errorsOf(validate(empty, 'json')), expected, 'empty JSON strings')
  const nulls = { id: null, article_id: null, user_id: null, body: null }
  t.strictSame(errorsOf(validate(nulls, 'json')), expected, 'JSON nulls')
})

t.test('every failing field is reported at once, in column order', async (t) => {
  const input = { id: 'c-1', article_id: 12, user_id: `${userId}x`, body: 'x '.repeat(501), created_at: 'now' }
  t.strictSame(errorsOf(validate(input, 'json')), [
    { field: 'id', code: 'invalid_format', message: 'must be a UUID', value: 'c-1' },
    { field: 'article_id', code: 'type_mismatch', message: 'must be a string', value: '12' },
    { field: 'user_id', code: 'invalid_format', message: 'must be a UUID', value: `${userId}x` },
    { field: 'body', code: 'too_long', message: WORDS_MESSAGE, value: `${'x '.repeat(100)}…` },
    {
      field: 'created_at',
      code: 'invalid_format',
      message: 'must be an ISO-8601 timestamp with a time zone, at most 6 fractional digits',
      value: 'now',
    },
  ])
})

t.test('body: 10,000 characters are accepted and 10,001 are too_long', async (t) => {
  const longest = 'a'.repeat(10_000)
  t.equal(rowOf(validate({ ...comment, body: longest }, 'csv')).body, longest)
  t.strictSame(errorsOf(validate({ ...comment, body: `${longest}b` }, 'csv')), [
    { field: 'body', code: 'too_long', message: CHARACTERS_MESSAGE, value: `${'a'.repeat(200)}…` },
  ])
})

t.test('body: characters are Unicode code points, an astral character counting once', async (t) => {
  const astral = '😀'.repeat(10_000) // 20,000 UTF-16 code units
  t.equal(rowOf(validate({ ...comment, body: astral }, 'json')).body, astral)
  const mixed = `${'é😀'.repeat(4_999)}ab` // 10,000 code points
  t.equal(rowOf(validate({ ...comment, body: mixed }, 'json')).body, mixed)
  t.strictSame(errorsOf(validate({ ...comment, body: `${astral}😀` }, 'json')), [
    { field: 'body', code: 'too_long', message: CHARACTERS_MESSAGE, value: `${'😀'.repeat(200)}…` },
  ])
})

t.test('body: 500 whitespace-separated words are accepted and 501 are too_long', async (t) => {
  const words = (count: number, separator: string) => Array.from({ length: count }, (_, i) => `w${i}`).join(separator)
  for (const separator of [' ', '\n', ' \t ', '\r\n\r\n', '\u00a0', '\u3000']) {
    const name = JSON.stringify(separator)
    const body = `  ${words(500, separator)}\n`
    t.equal(rowOf(validate({ ...comment, body }, 'csv')).body, body, `500 words, ${name}`)
    const tooMany = words(501, separator)
    const errors = errorsOf(validate({ ...comment, body: tooMany }, 'csv'))
    t.strictSame(
      errors,
      [{ field: 'body', code: 'too_long', message: WORDS_MESSAGE, value: `${tooMany.slice(0, 200)}…` }],
      name,
    )
  }
  const joined = 'a-b,c.d'.repeat(600)
  t.ok(validate({ ...comment, body: joined }, 'csv').ok, 'punctuation does not separate words')
})

t.test('body over both limits gets one error: the character limit', async (t) => {
  const body = 'word '.repeat(2_001) // 10,005 characters, 2,001 words
  t.strictSame(errorsOf(validate({ ...comment, body }, 'csv')), [
    { field: 'body', code: 'too_long', message: CHARACTERS_MESSAGE, value: `${body.slice(0, 200)}…` },
  ])
})

t.test('created_at: a timestamp with a zone, kept verbatim to the microsecond', async (t) => {
  for (const timestamp of [
    '2024-03-01T09:30:00.000001Z',
    '2024-03-01T09:30+0530',
    '2024-12-31 23:59:59.999999-11:00',
  ]) {
    t.equal(rowOf(validate({ ...comment, created_at: timestamp }, 'csv')).created_at, timestamp, timestamp)
  }
  for (const timestamp of ['2024-03-01T09:30:00', '2024-03-01T09:30:00.0000001Z', '2023-02-29T00:00Z']) {
    t.equal(errorsOf(validate({ ...comment, created_at: timestamp }, 'csv'))[0]?.code, 'invalid_format', timestamp)
  }
})

t.test('unknown keys are ignored, and are not in the row', async (t) => {
  t.strictSame(Object.keys(rowOf(validate({ ...comment, likes: '3', Body: 'x' }, 'csv'))), [...commentColumns])
  t.strictSame(Object.keys(rowOf(validate({ ...comment, parent_id: null }, 'json'))), [...commentColumns])
})
