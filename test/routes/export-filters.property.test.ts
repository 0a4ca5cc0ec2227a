import fc from 'fast-check'
import t from 'tap'
import { isTimestampWithZone } from '../../schemas/record-formats.ts'
import { buildTestApp } from '../helper.ts'
import { propertyParameters } from '../property.ts'

// Issue 8, finding 1: one rule decides which timestamps an export filter takes, the imports' own
// (isTimestampWithZone), for streams and async exports alike; and whatever it takes, PostgreSQL
// takes too: a filter value is answered 200/202 or 400, never 500.

const twoDigits = (max: number) => fc.integer({ min: 0, max }).map((value) => String(value).padStart(2, '0'))

/** Timestamps near and past every edge: year 0000, day 31 of short months, hour 24, offset 16:00. */
const timestampLike = fc
  .record({
    year: fc.oneof(
      fc.constantFrom('0000', '0001', '1999', '2023', '2024', '2100', '9999'),
      twoDigits(99).map((y) => `20${y}`),
    ),
    month: twoDigits(13),
    day: twoDigits(32),
    separator: fc.constantFrom('T', ' ', 't'),
    hour: twoDigits(25),
    minute: twoDigits(60),
    second: fc.option(twoDigits(61)),
    fraction: fc.option(fc.stringMatching(/^[0-9]{0,8}$/)),
    zone: fc.oneof(
      fc.constantFrom('Z', 'z', ''),
      fc
        .tuple(fc.constantFrom('+', '-'), twoDigits(24), fc.constantFrom(':', ''), twoDigits(60))
        .map((parts) => parts.join('')),
      fc.tuple(fc.constantFrom('+', '-'), twoDigits(24)).map((parts) => parts.join('')),
    ),
  })
  .map(({ year, month, day, separator, hour, minute, second, fraction, zone }) => {
    const seconds = second === null ? '' : `:${second}${fraction === null ? '' : `.${fraction}`}`
    return `${year}-${month}-${day}${separator}${hour}:${minute}${seconds}${zone}`
  })

t.test('streams and async exports accept a filter timestamp exactly when imports would', async (t) => {
  const app = await buildTestApp(t)
  await app.sql`insert into users (email, name, role) values ('a@example.com', 'A', 'reader')`
  await fc.assert(
    fc.asyncProperty(timestampLike, async (value) => {
      const accepted = isTimestampWithZone(value)
      const stream = await app.inject({
        url: `/api/v1/exports/users/stream?fields=id&updated_after=${encodeURIComponent(value)}`,
      })
      const job = await app.inject({
        method: 'POST',
        url: '/api/v1/exports',
        payload: { resource: 'comments', format: 'csv', filters: { created_before: value } },
      })
      if (stream.statusCode !== (accepted ? 200 : 400))
        throw new Error(`${value}: stream ${stream.statusCode} ${stream.body.slice(0, 200)}`)
      if (job.statusCode !== (accepted ? 202 : 400))
        throw new Error(`${value}: async export ${job.statusCode} ${job.body.slice(0, 200)}`)
    }),
    propertyParameters(200),
  )
  t.pass('every value decided by the same rule, and none refused by PostgreSQL')
})
