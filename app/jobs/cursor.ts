import type { JobCursor } from '../../db/jobs.ts'
import { ProblemError } from '../../plugins/problem-details.ts'

// The `cursor` of the job lists (imports, exports): the last listed job's created_at, to the
// microsecond, and id, as opaque base64url text.

export function encodeJobCursor(cursor: JobCursor): string {
  return Buffer.from(`${cursor.createdAt}|${cursor.id}`).toString('base64url')
}

/** @throws ProblemError 400 for anything this service did not give out */
export function decodeJobCursor(text: string): JobCursor {
  const [createdAt, id] = Buffer.from(text, 'base64url').toString().split('|')
  if (
    !createdAt ||
    !id ||
    !isCursorTimestamp(createdAt) ||
    !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)
  ) {
    throw new ProblemError('bad_request', 'The cursor is not one this service gave out.')
  }
  return { createdAt, id }
}

/** A cursor's timestamp: ISO 8601 in UTC to the microsecond, a real date (PostgreSQL parses it). */
function isCursorTimestamp(text: string): boolean {
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$/.test(text)) return false
  const date = new Date(text)
  return !Number.isNaN(date.getTime()) && date.toISOString().slice(0, 19) === text.slice(0, 19)
}
