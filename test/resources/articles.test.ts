import t from 'tap'
import type { FieldError, RecordOutcome } from '../../app/workers/fields.ts'
import articles, { ArticleRecordSchema, articleColumns } from '../../resources/articles.ts'

const { validate } = articles

// Per-record validation of articles (docs/contract.md §2), as the import workers run it: pure, no database.

const id = '6ec0bd7f-11c0-43da-975e-2a8ad9ebae0b'
const authorId = '0f8fad5b-d9cb-469f-a165-70867728950e'
const csvArticle = {
  id,
  slug: 'hello-world-2024',
  title: 'Hello, world',
  body: 'First paragraph.\n\nSecond paragraph.',
  author_id: authorId,
  tags: 'news|tech',
  published_at: '2024-03-01T09:30:00.123456Z',
  status: 'published',
}
const jsonArticle = { ...csvArticle, tags: ['news', 'tech'] }
const validRow = { ...csvArticle, tags: ['news', 'tech'] }

const TIMESTAMP_MESSAGE = 'must be an ISO-8601 timestamp with a time zone, at most 6 fractional digits'
const KEBAB_MESSAGE = 'must be kebab-case (a-z, 0-9, single hyphens)'
const DRAFT_MESSAGE = 'a draft must not have published_at'

function errorsOf(outcome: RecordOutcome): FieldError[] {
  if (outcome.ok) throw new Error(`expected errors, got the row ${JSON.stringify(outcome.row)}`)
  return outcome.errors
}

function rowOf(outcome: RecordOutcome): Record<string, unknown> {
  if (!outcome.ok) throw new Error(`expected a row, got ${JSON.stringify(outcome.errors)}`)
  return outcome.row
}

t.test('the record schema documents one property per CSV column, in column order', async (t) => {
  t.strictSame(Object.keys(ArticleRecordSchema.properties), [...articleColumns])
  t.strictSame(articleColumns, ['id', 'slug', 'title', 'body', 'author_id', 'tags', 'published_at', 'status'])
  t.equal(ArticleRecordSchema.$id, 'ArticleRecord')
  t.equal(ArticleRecordSchema.additionalProperties, true)
  t.strictSame(ArticleRecordSchema.required, ['slug', 'title', 'body', 'author_id', 'status'])
  for (const [name, property] of Object.entries(ArticleRecordSchema.properties)) {
    t.ok(property.description, `${name} has a description`)
  }
})

t.test('a valid record gives its row, from CSV and from JSON alike', async (t) => {
  t.strictSame(rowOf(validate(csvArticle, 'csv')), validRow)
  t.strictSame(rowOf(validate(jsonArticle, 'json')), validRow)
})

t.test('short texts and UUIDs are trimmed, UUIDs put in lower case, the body kept exactly as given', async (t) => {
  const input = {
    id: ` ${id.toUpperCase()}`,
    slug: ' hello-world-2024 ',
    title: '\tHello, world  ',
    body: '  indented first line\n\nlast line\n',
    author_id: `${authorId.toUpperCase()} `,
    tags: ' news | tech ',
    published_at: ' 2024-03-01T09:30:00.123456Z\t',
    status: ' published ',
  }
  t.strictSame(rowOf(validate(input, 'csv')), { ...validRow, body: '  indented first line\n\nlast line\n' })
})

t.test('id, tags and published_at may be absent: missing, or an empty value (published_at: null)', async (t) => {
  const required = { slug: 'a', title: 'A', body: 'b', author_id: authorId, status: 'draft' }
  const absent = { id: undefined, tags: undefined, published_at: undefined }
  t.strictSame(rowOf(validate(required, 'csv')), { ...required, ...absent }, 'missing CSV columns')
  t.strictSame(rowOf(validate(required, 'json')), { ...required, ...absent }, 'missing JSON keys')
  const emptyCells = { ...required, id: '', tags: '', published_at: '' }
  t.strictSame(rowOf(validate(emptyCells, 'csv')), { ...required, ...absent, published_at: null }, 'empty CSV cells')
  const nulls = { ...required, id: null, tags: null, published_at: null }
  t.strictSame(rowOf(validate(nulls, 'json')), { ...required, ...absent, published_at: null }, 'JSON nulls')
})

t.test('every failing field of a CSV record is reported at once, in column order', async (t) => {
  const input = {
    id: 'nope',
    slug: 'Hello_World',
    title: ' ',
    body: '\n\t ',
    author_id: '',
    tags: 'a||b',
    published_at: '2024-03-01',
    status: 'archived',
    unknown: 'ignored',
  }
  t.strictSame(errorsOf(validate(input, 'csv')), [
    { field: 'id', code: 'invalid_format', message: 'must be a UUID', value: 'nope' },
    { field: 'slug', code: 'invalid_format', message: KEBAB_MESSAGE, value: 'Hello_World' },
    { field: 'title', code: 'required', message: 'is required' },
    { field: 'body', code: 'required', message: 'is required' },
    { field: 'author_id', code: 'required', message: 'is required' },
    { field: 'tags', code: 'invalid_value', message: 'must not contain a blank tag', value: 'a||b' },
    { field: 'published_at', code: 'invalid_format', message: TIMESTAMP_MESSAGE, value: '2024-03-01' },
    { field: 'status', code: 'invalid_value', message: 'must be one of draft, published', value: 'archived' },
  ])
})

t.test('every failing field of a JSON record is reported at once, types strictly', async (t) => {
  const input = {
    slug: 7,
    title: null,
    body: ['b'],
    author_id: 'x',
    tags: 'news',
    published_at: 1709285400,
    status: true,
  }
  t.strictSame(errorsOf(validate(input, 'json')), [
    { field: 'slug', code: 'type_mismatch', message: 'must be a string', value: '7' },
    { field: 'title', code: 'required', message: 'is required' },
    { field: 'body', code: 'type_mismatch', message: 'must be a string', value: '["b"]' },
    { field: 'author_id', code: 'invalid_format', message: 'must be a UUID', value: 'x' },
    { field: 'tags', code: 'type_mismatch', message: 'must be an array of strings', value: 'news' },
    { field: 'published_at', code: 'type_mismatch', message: 'must be a string or null', value: '1709285400' },
    { field: 'status', code: 'type_mismatch', message: 'must be a string', value: 'true' },
  ])
})

t.test('slug: kebab-case, a-z and 0-9 in words joined by single hyphens', async (t) => {
  for (const slug of ['a', '2024', 'hello-world', 'a-1-b-2', 'x0']) {
    t.equal(rowOf(validate({ ...csvArticle, slug }, 'csv')).slug, slug, slug)
  }
  for (const slug of ['Hello', 'hello--world', '-hello', 'hello-', 'hello_world', 'hello world', 'héllo', 'a.b', '-']) {
    t.strictSame(
      errorsOf(validate({ ...jsonArticle, slug }, 'json')),
      [{ field: 'slug', code: 'invalid_format', message: KEBAB_MESSAGE, value: slug }],
      slug,
    )
  }
})

t.test('title and body: required and not blank; a blank body is required, a padded one kept as is', async (t) => {
  for (const blank of ['', '   ', '\n\r\n\t', '\u00a0\u2003']) {
    t.strictSame(
      errorsOf(validate({ ...jsonArticle, title: blank, body: blank }, 'json')),
      [
        { field: 'title', code: 'required', message: 'is required' },
        { field: 'body', code: 'required', message: 'is required' },
      ],
      JSON.stringify(blank),
    )
  }
  t.equal(rowOf(validate({ ...csvArticle, body: ' x ' }, 'csv')).body, ' x ')
})

t.test('status: draft or published, exactly; anything else is invalid_value', async (t) => {
  t.equal(rowOf(validate({ ...csvArticle, status: ' published ' }, 'csv')).status, 'published')
  t.equal(rowOf(validate({ ...csvArticle, published_at: '', status: 'draft' }, 'csv')).status, 'draft')
  for (const status of ['Draft', 'PUBLISHED', 'archived', 'draft,published']) {
    t.strictSame(
      errorsOf(validate({ ...csvArticle, status }, 'csv')),
      [{ field: 'status', code: 'invalid_value', message: 'must be one of draft, published', value: status }],
      status,
    )
  }
})

t.test('author_id: a required UUID, any case, stored in lower case', async (t) => {
  t.equal(rowOf(validate({ ...jsonArticle, author_id: authorId.toUpperCase() }, 'json')).author_id, authorId)
  t.strictSame(errorsOf(validate({ ...jsonArticle, author_id: '42' }, 'json')), [
    { field: 'author_id', code: 'invalid_format', message: 'must be a UUID', value: '42' },
  ])
  t.strictSame(errorsOf(validate({ ...jsonArticle, author_id: null }, 'json')), [
    { field: 'author_id', code: 'required', message: 'is required' },
  ])
})

t.test('CSV tags: `a|b` or a JSON array literal, each tag trimmed', async (t) => {
  for (const [cell, tags] of [
    ['a|b', ['a', 'b']],
    [' a | b c |d ', ['a', 'b c', 'd']],
    ['solo', ['solo']],
    ['["a","b"]', ['a', 'b']],
    [' [" a ", "b|c"] ', ['a', 'b|c']],
    ['[]', []],
    ['Ünïcode|😀', ['Ünïcode', '😀']],
  ] as const) {
    t.strictSame(rowOf(validate({ ...csvArticle, tags: cell }, 'csv')).tags, tags, cell)
  }
})

t.test(
  'CSV tags: a blank tag is invalid_value; a `[` cell that is not a JSON array of strings is invalid_format',
  async (t) => {
    for (const cell of ['a||b', 'a|', '|a', ' | ', '["a",""]', '["a"," "]']) {
      t.strictSame(
        errorsOf(validate({ ...csvArticle, tags: cell }, 'csv')),
        [{ field: 'tags', code: 'invalid_value', message: 'must not contain a blank tag', value: cell }],
        cell,
      )
    }
    const message = 'must be a JSON array of strings, or tags separated by |'
    for (const cell of ['[a,b]', '["a",1]', '[null]', '[["a"]]', '["a"', '[{"tag":"a"}]']) {
      t.strictSame(
        errorsOf(validate({ ...csvArticle, tags: cell }, 'csv')),
        [{ field: 'tags', code: 'invalid_format', message, value: cell }],
        cell,
      )
    }
  },
)

t.test('JSON tags: an array of strings, each trimmed; anything else is a type_mismatch', async (t) => {
  t.strictSame(rowOf(validate({ ...jsonArticle, tags: [' a ', 'b'] }, 'json')).tags, ['a', 'b'])
  t.strictSame(rowOf(validate({ ...jsonArticle, tags: [] }, 'json')).tags, [], 'an empty array clears the tags')
  t.equal(rowOf(validate({ ...jsonArticle, tags: '' }, 'json')).tags, undefined, 'an empty string is absent')
  const input = { ...jsonArticle, tags: [' a '] }
  validate(input, 'json')
  t.strictSame(input.tags, [' a '], 'the input array is not modified')
  t.strictSame(errorsOf(validate({ ...jsonArticle, tags: ['a', ' '] }, 'json')), [
    { field: 'tags', code: 'invalid_value', message: 'must not contain a blank tag', value: '["a"," "]' },
  ])
  for (const [tags, value] of [
    ['a|b', 'a|b'],
    [['a', 1], '["a",1]'],
    [[null], '[null]'],
    [{ 0: 'a' }, '{"0":"a"}'],
    [3, '3'],
  ] as const) {
    t.strictSame(
      errorsOf(validate({ ...jsonArticle, tags }, 'json')),
      [{ field: 'tags', code: 'type_mismatch', message: 'must be an array of strings', value }],
      value,
    )
  }
})

t.test('published_at: a timestamp with a zone kept verbatim; empty or null clears it', async (t) => {
  for (const timestamp of ['2024-03-01T09:30:00.000001Z', '2024-03-01T09:30+05:30', '2024-03-01 09:30:00+0530']) {
    t.equal(rowOf(validate({ ...csvArticle, published_at: timestamp }, 'csv')).published_at, timestamp, timestamp)
  }
  t.equal(rowOf(validate({ ...csvArticle, published_at: '' }, 'csv')).published_at, null, 'an empty CSV cell')
  t.equal(rowOf(validate({ ...csvArticle, published_at: '  ' }, 'csv')).published_at, null, 'a blank CSV cell')
  t.equal(rowOf(validate({ ...jsonArticle, published_at: null }, 'json')).published_at, null, 'JSON null')
  t.equal(rowOf(validate({ ...jsonArticle, published_at: '' }, 'json')).published_at, null, 'JSON ""')
  for (const timestamp of ['2024-03-01T09:30:00', '2024-03-01T09:30:00.1234567Z', '2024-02-30T09:30:00Z']) {
    t.strictSame(
      errorsOf(validate({ ...jsonArticle, published_at: timestamp }, 'json')),
      [{ field: 'published_at', code: 'invalid_format', message: TIMESTAMP_MESSAGE, value: timestamp }],
      timestamp,
    )
  }
})

t.test('a draft with a published_at is invalid_state, reported with the record’s other errors', async (t) => {
  const draft = { ...csvArticle, status: 'draft' }
  t.strictSame(errorsOf(validate(draft, 'csv')), [
    { field: 'published_at', code: 'invalid_state', message: DRAFT_MESSAGE, value: csvArticle.published_at },
  ])
  t.strictSame(errorsOf(validate({ ...draft, slug: 'Bad Slug', status: ' draft ' }, 'csv')), [
    { field: 'slug', code: 'invalid_format', message: KEBAB_MESSAGE, value: 'Bad Slug' },
    { field: 'published_at', code: 'invalid_state', message: DRAFT_MESSAGE, value: csvArticle.published_at },
  ])
})

t.test('a draft may have no published_at, and an invalid one is only invalid_format', async (t) => {
  t.equal(rowOf(validate({ ...csvArticle, status: 'draft', published_at: '' }, 'csv')).published_at, null)
  t.equal(rowOf(validate({ ...jsonArticle, status: 'draft', published_at: null }, 'json')).published_at, null)
  const { published_at: _, ...withoutPublishedAt } = jsonArticle
  t.equal(rowOf(validate({ ...withoutPublishedAt, status: 'draft' }, 'json')).published_at, undefined)
  t.strictSame(errorsOf(validate({ ...jsonArticle, status: 'draft', published_at: 'soon' }, 'json')), [
    { field: 'published_at', code: 'invalid_format', message: TIMESTAMP_MESSAGE, value: 'soon' },
  ])
  t.strictSame(errorsOf(validate({ ...jsonArticle, status: 'Draft' }, 'json')), [
    { field: 'status', code: 'invalid_value', message: 'must be one of draft, published', value: 'Draft' },
  ])
})

t.test('unknown keys are ignored, and are not in the row', async (t) => {
  t.strictSame(Object.keys(rowOf(validate({ ...csvArticle, views: '10', Slug: 'X' }, 'csv'))), [...articleColumns])
  t.strictSame(Object.keys(rowOf(validate({ ...jsonArticle, meta: { a: 1 } }, 'json'))), [...articleColumns])
})

t.test('text and tags containing U+0000, which PostgreSQL cannot store, are invalid_value', async (t) => {
  const message = 'must not contain a NUL character (U+0000)'
  t.strictSame(errorsOf(validate({ ...jsonArticle, body: 'a\u0000b', tags: ['a\u0000'] }, 'json')), [
    { field: 'body', code: 'invalid_value', message, value: 'a\\u0000b' },
    { field: 'tags', code: 'invalid_value', message, value: '["a\\u0000"]' },
  ])
})
