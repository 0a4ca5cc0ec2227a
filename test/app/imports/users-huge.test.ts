import { readFileSync } from 'node:fs'
import path from 'node:path'
import { parse } from 'csv-parse/sync'
import t from 'tap'
import type { ImportJob } from '../../../schemas/imports.ts'
import { buildTestApp, importAndWait, root } from '../../helper.ts'
import {
  databaseUsers,
  differences,
  errorCodes,
  failureCodes,
  GENERATED_ID,
  OracleDatabase,
  oracleUsers,
} from '../../import-oracle.ts'

// The public evaluation file (test/fixtures/users_huge.csv, see test/fixtures/README.md):
// 10,000 records after the header, CRLF line endings, no quoted fields, so record n is on line
// n + 1. The expected outcome is the oracle's (test/import-oracle.ts: docs/contract.md §1–§3 applied one
// record at a time), not the service's. What the oracle finds, and why:
//
//   first import: processed 10,000 = inserted 9,667 + updated 33 + failed 300
//   - 300 records fail: 201 have the invalid email `foo@bar` (no TLD), 167 the invalid role
//     `manager`, 68 of them both (one error per field, so 368 errors): 133 email only
//     (invalid_format), 99 role only (invalid_value), 68 both. No unique_violation: no record
//     with an id carries an email that another id holds.
//   - 200 records have no id: 34 of them fail (1 `foo@bar`, 33 `manager`); of the 166 others,
//     133 carry a new email and are inserted with a generated id, and 33 repeat (in the same
//     case) the email of the record just before them, so they update that user (docs/contract.md §3: a
//     record without id updates the row with its natural key). 16 more such repeats fail on
//     their role: 49 repeated emails in all.
//   - inserted: 9,534 records with an id + 133 without = 9,667 rows in users.
//   second import of the same file into the same database: the 9,700 valid records all find
//   their row (by id, or by email for those without id): updated 9,700, inserted 0, failed 300
//   as before, still 9,667 rows.

const csvPath = path.join(root, 'test', 'fixtures', 'users_huge.csv')
const text = readFileSync(csvPath, 'utf8')
const parsed = parse(text, { columns: true, bom: true, info: true }) as {
  record: Record<string, string>
  info: { lines: number }
}[]
const records = parsed.map(({ record }) => record)
/** The 1-based line where each record starts: the line after the end of the previous one. */
const startLines = parsed.map((_, index) =>
  index === 0 ? 2 : (parsed[index - 1] as { info: { lines: number } }).info.lines + 1,
)

const oracle = new OracleDatabase()
const first = oracle.apply('users', records, 'csv')
const expectedAfterFirst = oracleUsers(oracle)
const second = oracle.apply('users', records, 'csv')
const expectedAfterSecond = oracleUsers(oracle)

const app = await buildTestApp(t)
app.jobs.start()
let firstJob: ImportJob
let idsAfterFirst: string[]

interface RecordError {
  line: number
  record: number
  id?: string
  field?: string
  code: string
  message: string
  value?: string
}

/** The job's errors, all of them (GET /api/v1/imports/:id/errors). */
async function errorsOf(job: ImportJob): Promise<RecordError[]> {
  const response = await app.inject({ url: `/api/v1/imports/${job.id}/errors?format=ndjson` })
  return response.body
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line))
}

t.test('the oracle reads the file as the comment above says', async (t) => {
  t.same(first.counters, { processed: 10_000, inserted: 9_667, updated: 33, failed: 300 })
  const kinds: Record<string, number> = {}
  for (const codes of Object.values(failureCodes(first.failures)))
    kinds[codes.join(' + ')] = (kinds[codes.join(' + ')] ?? 0) + 1
  t.same(kinds, {
    'email:invalid_format': 133,
    'role:invalid_value': 99,
    'email:invalid_format + role:invalid_value': 68,
  })
  t.equal(records.filter((record) => record.id === '').length, 200)
  t.same(second.counters, { processed: 10_000, inserted: 0, updated: 9_700, failed: 300 })
  t.equal(startLines.at(-1), 10_001, 'one record per line: the last starts on line 10,001')
})

t.test('first import: the counters are the oracle’s', async (t) => {
  firstJob = await importAndWait(app, { resource: 'users', file: text, filename: 'users_huge.csv' })
  t.equal(firstJob.status, 'completed')
  t.same(firstJob.counters, first.counters)
})

t.test('first import: the users table holds the oracle’s rows', async (t) => {
  const [row] = await app.sql<{ count: number }[]>`select count(*)::int as count from users`
  t.equal(row?.count, 9_667)
  t.same(differences(expectedAfterFirst, await databaseUsers(app.sql, oracle)), [])
  idsAfterFirst = (await app.sql<{ id: string }[]>`select id::text from users order by id`).map(({ id }) => id)
})

t.test('first import: sample rows, as the contract reads their lines', async (t) => {
  const users = await databaseUsers(app.sql, oracle)
  // line 7: a record with an id, inserted as given
  t.same(users['user5@example.com'], {
    id: '2dcfd84e-3c83-45b6-8542-50d7199a1fe3',
    email: 'user5@example.com',
    name: 'User 5',
    role: 'reader',
    active: false,
    created_at: '2024-01-01T00:05:00.000000Z',
    updated_at: '2024-01-01T00:10:00.000000Z',
  })
  // line 52: no id, a new email: inserted with an id of the database's
  t.same(users['user50@example.com'], {
    id: GENERATED_ID,
    email: 'user50@example.com',
    name: 'User 50',
    role: 'reader',
    active: true,
    created_at: '2024-01-01T00:50:00.000000Z',
    updated_at: '2024-01-01T00:55:00.000000Z',
  })
  // lines 201 and 202: the second, without id, updates the row the first inserted
  t.same(users['user199@example.com'], {
    id: '81c3c7c9-ab90-4794-9626-33f96e4d9c15',
    email: 'user199@example.com',
    name: 'User 200',
    role: 'reader',
    active: true,
    created_at: '2024-01-01T03:20:00.000000Z',
    updated_at: '2024-01-01T03:25:00.000000Z',
  })
  // line 1202 repeats the email of line 1201 without id, but its role `manager` is invalid
  t.equal(users['user1199@example.com']?.name, 'User 1199')
  t.notOk(users['foo@bar'], 'no row has the invalid email')
})

t.test('first import: every error is on its record’s line, with the oracle’s codes', async (t) => {
  const errors = await errorsOf(firstJob)
  t.equal(errors.length, 368)
  t.same(differences(failureCodes(first.failures), errorCodes(errors)), [])
  const misplaced = errors.filter((error) => error.line !== startLines[error.record - 1])
  t.same(misplaced, [], 'line = the physical line where the record starts (header: line 1)')
  t.same(errors.slice(0, 2), [
    {
      line: 2,
      record: 1,
      field: 'email',
      code: 'invalid_format',
      message: errors[0]?.message,
      value: 'foo@bar',
    },
    { line: 2, record: 1, field: 'role', code: 'invalid_value', message: errors[1]?.message, value: 'manager' },
  ])
})

t.test('second import of the same file: every valid record updates its row, the same records fail', async (t) => {
  const job = await importAndWait(app, { resource: 'users', file: text, filename: 'users_huge.csv' })
  t.same(job.counters, second.counters)
  t.same(errorCodes(await errorsOf(job)), failureCodes(second.failures))
})

t.test('second import: the same rows, with the same ids', async (t) => {
  const ids = (await app.sql<{ id: string }[]>`select id::text from users order by id`).map(({ id }) => id)
  t.equal(ids.length, 9_667)
  t.same(ids, idsAfterFirst)
  t.same(differences(expectedAfterSecond, await databaseUsers(app.sql, oracle)), [])
})
