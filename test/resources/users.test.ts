import t from 'tap'
import type { FieldError, RecordOutcome } from '../../app/workers/fields.ts'
import users, { UserRecordSchema, userColumns } from '../../resources/users.ts'

const { validate } = users

// Per-record validation of users (docs/contract.md §2), as the import workers run it: pure, no database.

const id = '0f8fad5b-d9cb-469f-a165-70867728950e'
const csvUser = {
  id,
  email: 'ada@example.com',
  name: 'Ada Lovelace',
  role: 'admin',
  active: 'true',
  created_at: '2024-03-01T09:30:00Z',
  updated_at: '2024-03-02T10:00:00.123456+01:00',
}
const jsonUser = { ...csvUser, active: true }

const TIMESTAMP_MESSAGE = 'must be an ISO-8601 timestamp with a time zone, at most 6 fractional digits'

/** The errors of a record that must fail. */
function errorsOf(outcome: RecordOutcome): FieldError[] {
  if (outcome.ok) throw new Error(`expected errors, got the row ${JSON.stringify(outcome.row)}`)
  return outcome.errors
}

/** The normalized row of a record that must pass. */
function rowOf(outcome: RecordOutcome): Record<string, unknown> {
  if (!outcome.ok) throw new Error(`expected a row, got ${JSON.stringify(outcome.errors)}`)
  return outcome.row
}

t.test('the record schema documents one property per CSV column, in column order', async (t) => {
  t.strictSame(Object.keys(UserRecordSchema.properties), [...userColumns])
  t.strictSame(userColumns, ['id', 'email', 'name', 'role', 'active', 'created_at', 'updated_at'])
  t.equal(UserRecordSchema.$id, 'UserRecord')
  t.equal(UserRecordSchema.additionalProperties, true, 'unknown keys are allowed (and ignored)')
  t.strictSame(UserRecordSchema.required, ['email', 'name', 'role'])
  for (const [name, property] of Object.entries(UserRecordSchema.properties)) {
    t.ok(property.description, `${name} has a description`)
  }
  t.equal(UserRecordSchema.properties.email.maxLength, 254, 'compiling the check leaves the schema as documented')
})

t.test('a valid CSV record gives its row: trimmed, id in lower case, active a boolean', async (t) => {
  const row = rowOf(
    validate(
      {
        id: ` ${id.toUpperCase()} `,
        email: '  Ada@Example.COM ',
        name: ' Ada Lovelace\t',
        role: ' reader ',
        active: ' FALSE ',
        created_at: ' 2024-03-01T09:30:00Z ',
        updated_at: '2024-03-02 10:00:00.123456+01:00',
      },
      'csv',
    ),
  )
  t.strictSame(row, {
    id,
    email: 'Ada@Example.COM',
    name: 'Ada Lovelace',
    role: 'reader',
    active: false,
    created_at: '2024-03-01T09:30:00Z',
    updated_at: '2024-03-02 10:00:00.123456+01:00',
  })
})

t.test('a valid JSON record gives the same row', async (t) => {
  t.strictSame(rowOf(validate(jsonUser, 'json')), { ...csvUser, active: true })
  t.strictSame(rowOf(validate(csvUser, 'csv')), { ...csvUser, active: true })
})

t.test('only email, name and role are required: the other fields may be absent', async (t) => {
  const minimal = { email: 'ada@example.com', name: 'Ada', role: 'author' }
  const absent = { id: undefined, active: undefined, created_at: undefined, updated_at: undefined }
  t.strictSame(rowOf(validate(minimal, 'csv')), { ...minimal, ...absent }, 'missing CSV columns')
  t.strictSame(rowOf(validate(minimal, 'json')), { ...minimal, ...absent }, 'missing JSON keys')
  const empty = { ...minimal, id: '', active: '  ', created_at: '', updated_at: '' }
  t.strictSame(rowOf(validate(empty, 'csv')), { ...minimal, ...absent }, 'empty CSV cells are absent')
  t.strictSame(rowOf(validate(empty, 'json')), { ...minimal, ...absent }, 'empty JSON strings are absent')
  const nulls = { ...minimal, id: null, active: null, created_at: null, updated_at: null }
  t.strictSame(rowOf(validate(nulls, 'json')), { ...minimal, ...absent }, 'JSON nulls are absent')
})

t.test('every failing field of a CSV record is reported at once, in column order', async (t) => {
  const input = {
    id: 'not-a-uuid',
    email: 'foo@bar',
    name: '   ',
    role: 'boss',
    active: 'yes',
    created_at: '2024-02-30T00:00:00Z',
    updated_at: '2024-01-01T00:00:00',
  }
  t.strictSame(errorsOf(validate(input, 'csv')), [
    { field: 'id', code: 'invalid_format', message: 'must be a UUID', value: 'not-a-uuid' },
    {
      field: 'email',
      code: 'invalid_format',
      message: 'must be an email address (local@domain.tld)',
      value: 'foo@bar',
    },
    { field: 'name', code: 'required', message: 'is required' },
    { field: 'role', code: 'invalid_value', message: 'must be one of admin, editor, author, reader', value: 'boss' },
    { field: 'active', code: 'invalid_value', message: 'must be true or false', value: 'yes' },
    { field: 'created_at', code: 'invalid_format', message: TIMESTAMP_MESSAGE, value: '2024-02-30T00:00:00Z' },
    { field: 'updated_at', code: 'invalid_format', message: TIMESTAMP_MESSAGE, value: '2024-01-01T00:00:00' },
  ])
})

t.test('JSON types are strict: a value of another type is a type_mismatch, its value as JSON', async (t) => {
  const input = { id: 42, email: ['ada@example.com'], name: { first: 'Ada' }, role: 1, active: 'true', updated_at: 0 }
  t.strictSame(errorsOf(validate(input, 'json')), [
    { field: 'id', code: 'type_mismatch', message: 'must be a string', value: '42' },
    { field: 'email', code: 'type_mismatch', message: 'must be a string', value: '["ada@example.com"]' },
    { field: 'name', code: 'type_mismatch', message: 'must be a string', value: '{"first":"Ada"}' },
    { field: 'role', code: 'type_mismatch', message: 'must be a string', value: '1' },
    { field: 'active', code: 'type_mismatch', message: 'must be a boolean', value: 'true' },
    { field: 'updated_at', code: 'type_mismatch', message: 'must be a string', value: '0' },
  ])
})

t.test('a required field that is missing, empty, blank or JSON null is required, without a value', async (t) => {
  const required = (field: string) => ({ field, code: 'required', message: 'is required' })
  for (const [source, blank] of [
    ['csv', undefined],
    ['csv', ''],
    ['csv', ' \t '],
    ['json', undefined],
    ['json', ''],
    ['json', null],
  ] as const) {
    const input = { ...csvUser, email: blank, name: blank, role: blank, active: undefined }
    t.strictSame(
      errorsOf(validate(input, source)),
      [required('email'), required('name'), required('role')],
      `${source} ${JSON.stringify(blank)}`,
    )
  }
})

t.test('id: any UUID version in any case, stored in lower case; anything else is invalid_format', async (t) => {
  for (const given of [id.toUpperCase(), '0F8FAD5B-d9cb-469F-A165-70867728950E', `\t${id} `]) {
    t.equal(rowOf(validate({ ...csvUser, id: given }, 'csv')).id, id, given)
  }
  t.equal(rowOf(validate({ ...jsonUser, id: id.toUpperCase() }, 'json')).id, id)
  const nil = '00000000-0000-0000-0000-000000000000'
  t.equal(rowOf(validate({ ...csvUser, id: nil }, 'csv')).id, nil, 'the nil UUID')
  for (const given of [
    '0f8fad5bd9cb469fa16570867728950e',
    '{0f8fad5b-d9cb-469f-a165-70867728950e}',
    '0f8fad5b-d9cb-469f-a165-70867728950',
    '0f8fad5b-d9cb-469f-a165-70867728950e0',
    '0f8fad5b-d9cb-469f-a165-70867728950g',
    '0f8fad5b_d9cb-469f-a165-70867728950e',
    '0f8fad5b-d9cb-469f-a165-7086772895-e',
  ]) {
    t.strictSame(
      errorsOf(validate({ ...csvUser, id: given }, 'csv')),
      [{ field: 'id', code: 'invalid_format', message: 'must be a UUID', value: given }],
      given,
    )
  }
})

t.test('email: local@domain.tld, stored trimmed with its case', async (t) => {
  for (const email of [
    'ada@example.com',
    'Ada.Lovelace@Example.CO.UK',
    'a+tag@sub-domain.example.io',
    "o'brien!#$%&*/=?^_`{|}~@example.org",
    'ünïcödé@example.com',
    'a@1.example.museum',
    'x@a-b.c-d.xyz',
  ]) {
    t.equal(rowOf(validate({ ...csvUser, email: ` ${email} ` }, 'csv')).email, email, email)
  }
})

t.test('email: anything but local@domain.tld is invalid_format', async (t) => {
  for (const email of [
    'foo@bar',
    'foo',
    '@example.com',
    'foo@',
    'foo@@example.com',
    'foo@bar@example.com',
    'fo o@example.com',
    'foo\u00a0bar@example.com',
    'a"b@example.com',
    'a(b)@example.com',
    'a,b@example.com',
    'a:b@example.com',
    'a;b@example.com',
    'a<b>@example.com',
    'a[b]@example.com',
    'a\\b@example.com',
    'foo@.example.com',
    'foo@example..com',
    'foo@example.com.',
    'foo@-example.com',
    'foo@example-.com',
    'foo@exa_mple.com',
    'foo@example.c',
    'foo@example.c0m',
    'foo@example.co-m',
    'foo@exämple.com',
    'foo@example. com',
  ]) {
    t.strictSame(
      errorsOf(validate({ ...csvUser, email }, 'csv')),
      [
        {
          field: 'email',
          code: 'invalid_format',
          message: 'must be an email address (local@domain.tld)',
          value: email,
        },
      ],
      email,
    )
  }
})

t.test('email: at most 254 characters once trimmed, counted in code points', async (t) => {
  const domain = '@example.com' // 12 characters
  const longest = `${'a'.repeat(242)}${domain}`
  t.equal(rowOf(validate({ ...csvUser, email: `  ${longest}  ` }, 'csv')).email, longest, '254 characters')
  const astral = `${'😀'.repeat(242)}${domain}`
  t.equal(rowOf(validate({ ...csvUser, email: astral }, 'csv')).email, astral, '254 code points, 496 UTF-16 units')
  const tooLong = `a${longest}`
  t.strictSame(errorsOf(validate({ ...csvUser, email: tooLong }, 'csv')), [
    { field: 'email', code: 'too_long', message: 'must be at most 254 characters', value: `${tooLong.slice(0, 200)}…` },
  ])
})

t.test('name: stored trimmed; role: exactly one of the four roles once trimmed', async (t) => {
  t.equal(rowOf(validate({ ...csvUser, name: '  Grace  Hopper \n' }, 'csv')).name, 'Grace  Hopper')
  for (const role of ['admin', 'editor', 'author', 'reader']) {
    t.equal(rowOf(validate({ ...csvUser, role: ` ${role} ` }, 'csv')).role, role, role)
  }
  for (const role of ['Admin', 'READER', 'owner', 'admin,editor']) {
    t.strictSame(
      errorsOf(validate({ ...jsonUser, role }, 'json')),
      [{ field: 'role', code: 'invalid_value', message: 'must be one of admin, editor, author, reader', value: role }],
      role,
    )
  }
})

t.test('CSV active: true or false in any case; empty is absent; anything else is invalid_value', async (t) => {
  for (const [cell, active] of [
    ['true', true],
    ['TRUE', true],
    ['True', true],
    ['tRuE', true],
    [' false ', false],
    ['FALSE', false],
    ['False', false],
    ['', undefined],
  ] as const) {
    t.equal(rowOf(validate({ ...csvUser, active: cell }, 'csv')).active, active, JSON.stringify(cell))
  }
  for (const cell of ['yes', 'no', '1', '0', 't', 'f', 'truthy', '"true"']) {
    t.strictSame(
      errorsOf(validate({ ...csvUser, active: cell }, 'csv')),
      [{ field: 'active', code: 'invalid_value', message: 'must be true or false', value: cell }],
      cell,
    )
  }
})

t.test('JSON active: a JSON boolean; null or "" is absent; "true", 1 or "yes" is a type_mismatch', async (t) => {
  t.equal(rowOf(validate({ ...jsonUser, active: true }, 'json')).active, true)
  t.equal(rowOf(validate({ ...jsonUser, active: false }, 'json')).active, false)
  t.equal(rowOf(validate({ ...jsonUser, active: null }, 'json')).active, undefined)
  t.equal(rowOf(validate({ ...jsonUser, active: '' }, 'json')).active, undefined)
  for (const [active, value] of [
    ['true', 'true'],
    ['FALSE', 'FALSE'],
    [1, '1'],
    [0, '0'],
    [[true], '[true]'],
  ] as const) {
    t.strictSame(
      errorsOf(validate({ ...jsonUser, active }, 'json')),
      [{ field: 'active', code: 'type_mismatch', message: 'must be a boolean', value }],
      value,
    )
  }
})

t.test('timestamps with a zone are accepted and stored as the trimmed text, microseconds intact', async (t) => {
  for (const timestamp of [
    '2024-03-01T09:30Z',
    '2024-03-01T09:30:15Z',
    '2024-03-01T09:30:15.5Z',
    '2024-03-01T09:30:15.123456Z',
    '2024-03-01T09:30:15.000001+05:30',
    '2024-03-01T09:30:15+0530',
    '2024-03-01T09:30:15-08:00',
    '2024-03-01T09:30-0800',
    '2024-03-01 09:30:15Z',
    '2024-03-01T09:30:15+05',
    // As PostgreSQL writes a timestamptz, and so a CSV export: a space, the offset's hours only.
    '2024-03-01 09:30:15.123456+00',
    '2024-03-01 09:30:15-08',
    '2024-02-29T23:59:59.999999+15:59',
    '2000-02-29T00:00:00-00:00',
    '0001-01-01T00:00:00Z',
    '9999-12-31T23:59:59Z',
  ]) {
    const row = rowOf(validate({ ...csvUser, created_at: ` ${timestamp} `, updated_at: timestamp }, 'csv'))
    t.strictSame([row.created_at, row.updated_at], [timestamp, timestamp], timestamp)
  }
})

t.test(
  'timestamps without a zone, of a day that does not exist or over 6 fractional digits are invalid_format',
  async (t) => {
    for (const timestamp of [
      '2024-03-01T09:30:15',
      '2024-03-01T09:30:15.1234567Z',
      '2024-03-01T09:30:15.Z',
      '2024-02-30T09:30:15Z',
      '2023-02-29T09:30:15Z',
      '1900-02-29T09:30:15Z',
      '2024-04-31T09:30:15Z',
      '2024-13-01T09:30:15Z',
      '2024-00-01T09:30:15Z',
      '2024-03-00T09:30:15Z',
      '0000-01-01T00:00:00Z',
      '2024-03-01T24:00:00Z',
      '2024-03-01T09:60:00Z',
      '2024-06-30T23:59:60Z',
      '2024-03-01T09:30:15+16:00',
      '2024-03-01T09:30:15+05:60',
      '2024-03-01T09:30:15+5',
      '2024-03-01T09:30:15+16',
      '2024-03-01T09:30:15+05:3',
      '2024-03-01T09:30:15+5:30',
      '2024-03-01T09:30:15 Z',
      '2024-03-01T9:30:15Z',
      '2024-3-01T09:30:15Z',
      '2024-03-01',
      '2024-03-01Z',
      '2024-03-01T09Z',
      '20240301T093015Z',
      '2024-03-01t09:30:15z',
      '1709285415',
      'yesterday',
    ]) {
      t.strictSame(
        errorsOf(validate({ ...jsonUser, updated_at: timestamp }, 'json')),
        [{ field: 'updated_at', code: 'invalid_format', message: TIMESTAMP_MESSAGE, value: timestamp }],
        timestamp,
      )
    }
  },
)

t.test('the value of an error is the raw value, cut to 200 characters without splitting one, and marked', async (t) => {
  const long = `${'😀'.repeat(150)}${'x'.repeat(100)}`
  const [error] = errorsOf(validate({ ...csvUser, role: long }, 'csv'))
  t.equal(error?.value, `${'😀'.repeat(150)}${'x'.repeat(50)}…`)
  const [padded] = errorsOf(validate({ ...csvUser, role: '  boss ' }, 'csv'))
  t.equal(padded?.value, '  boss ', 'as given, not trimmed')
})

t.test('unknown keys are ignored, and are not in the row', async (t) => {
  const csvRow = rowOf(validate({ ...csvUser, nickname: 'ada', '': 'x', role_id: '7' }, 'csv'))
  t.strictSame(Object.keys(csvRow), [...userColumns])
  const jsonRow = rowOf(validate({ ...jsonUser, extra: { nested: true }, password: null }, 'json'))
  t.strictSame(Object.keys(jsonRow), [...userColumns])
})

t.test('text containing U+0000, which PostgreSQL cannot store, is invalid_value', async (t) => {
  t.strictSame(errorsOf(validate({ ...jsonUser, name: 'Ada\u0000Lovelace' }, 'json')), [
    {
      field: 'name',
      code: 'invalid_value',
      message: 'must not contain a NUL character (U+0000)',
      value: 'Ada\\u0000Lovelace',
    },
  ])
})

// The format checks are written over character codes for speed: compare them with the regular
// expressions of the rules on many near misses of valid values (seeded, so reproducible).

const REFERENCE_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const REFERENCE_EMAIL = /^[^\s@"(),:;<>[\]\\]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}$/
const REFERENCE_TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,6})?)?(?:Z|[+-](\d{2}):?(\d{2}))$/

function referenceTimestamp(text: string): boolean {
  const match = REFERENCE_TIMESTAMP.exec(text)
  if (!match) return false
  const [year, month, day, hour, minute, second, offsetHours, offsetMinutes] = match
    .slice(1)
    .map((digits) => Number(digits ?? 0))
  const date = new Date(0)
  date.setUTCFullYear(year as number, (month as number) - 1, day)
  return (
    (year as number) > 0 &&
    date.getUTCMonth() === (month as number) - 1 &&
    date.getUTCDate() === day &&
    (hour as number) <= 23 &&
    (minute as number) <= 59 &&
    (second as number) <= 59 &&
    (offsetHours as number) <= 15 &&
    (offsetMinutes as number) <= 59
  )
}

function* nearMisses(seeds: string[], alphabet: string, count: number): Generator<string> {
  let state = 42
  const random = (below: number) => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31
    return state % below
  }
  for (let index = 0; index < count; index++) {
    let text = seeds[random(seeds.length)] as string
    for (let edits = 1 + random(3); edits > 0; edits--) {
      const at = random(text.length + 1)
      const character = alphabet[random(alphabet.length)] as string
      const edit = random(3)
      text = text.slice(0, at) + (edit === 2 ? '' : character) + text.slice(edit === 0 ? at : at + 1)
    }
    yield text
  }
}

t.test('the id, email and timestamp checks agree with the regular expressions of the rules', async (t) => {
  const cases: [string, string[], string, (text: string) => boolean][] = [
    ['id', [id, id.toUpperCase()], '0123456789abcdefABCDEFgG-_ {}', (text) => REFERENCE_UUID.test(text)],
    [
      'email',
      ['ada@example.com', 'a.b@x-y.co', 'q@1a.bc.de'],
      'aZ09.-_@"(),:;<>[]\\ \u00a0é+',
      (text) => REFERENCE_EMAIL.test(text),
    ],
    [
      'created_at',
      ['2024-02-29T23:59:59.123456+05:30', '2023-12-31 00:00Z', '2024-04-30T12:00:00-0800'],
      '0123456789-:+.TZ tz',
      referenceTimestamp,
    ],
  ]
  for (const [field, seeds, alphabet, reference] of cases) {
    let disagreements = 0
    let acceptedCount = 0
    for (const text of nearMisses(seeds, alphabet, 20_000)) {
      const accepted = validate({ ...csvUser, [field]: text }, 'csv').ok
      if (accepted) acceptedCount++
      if (accepted !== reference(text.trim()) && text.trim() !== '' && disagreements++ < 5) {
        t.fail(`${field} ${JSON.stringify(text)}: accepted ${accepted}`)
      }
    }
    t.equal(disagreements, 0, `${field}: no disagreement`)
    t.ok(acceptedCount > 500 && acceptedCount < 19_500, `${field}: both outcomes tried (${acceptedCount} accepted)`)
  }
})
