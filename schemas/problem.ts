import { type Static, Type } from '@sinclair/typebox'
import { ref } from './common.ts'

/**
 * Every problem type the service emits, in one place. `type` URIs are URNs: stable
 * identifiers that clients can switch on, documented in docs/api.md, never dereferenced.
 */
export const problemTypes = {
  bad_request: { status: 400, title: 'Bad request' },
  validation_failed: { status: 400, title: 'Request validation failed' },
  unauthorized: { status: 401, title: 'Authentication required' },
  not_found: { status: 404, title: 'Not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  conflict: { status: 409, title: 'Conflict' },
  gone: { status: 410, title: 'Gone' },
  payload_too_large: { status: 413, title: 'Payload too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  range_not_satisfiable: { status: 416, title: 'Range not satisfiable' },
  unprocessable: { status: 422, title: 'Unprocessable content' },
  too_many_requests: { status: 429, title: 'Too many requests' },
  request_timeout: { status: 408, title: 'Request timeout' },
  headers_too_large: { status: 431, title: 'Request header fields too large' },
  internal_error: { status: 500, title: 'Internal server error' },
  // Only in a failed job's `error`, never an HTTP response: a source corrupt past the part read
  // at upload (its earlier records stand), and a job whose runs kept dying (JOB_MAX_ATTEMPTS).
  source_corrupt: { status: 422, title: 'Import source corrupt' },
  // A source that the store no longer has, or may not be read (its object deleted, a bucket's
  // permissions changed): the job fails with it.
  source_unavailable: { status: 422, title: 'Import source unavailable' },
  attempts_exhausted: { status: 500, title: 'Job attempts exhausted' },
  database_unavailable: { status: 503, title: 'Database unavailable' },
  service_unavailable: { status: 503, title: 'Service unavailable' },
  store_unavailable: { status: 503, title: 'Object store unavailable' },
} as const satisfies Record<string, { status: number; title: string }>

export type ProblemCode = keyof typeof problemTypes

export function problemTypeUri(code: ProblemCode): string {
  return `urn:bulk-io:problem:${code.replaceAll('_', '-')}`
}

export const InvalidParamSchema = Type.Object(
  {
    in: Type.String({ description: 'Where the value was: body, querystring, params or headers.' }),
    name: Type.String({ description: 'The failing field, as a dotted path; empty for the whole part.' }),
    pointer: Type.String({ description: 'JSON Pointer to the failing value inside that part.' }),
    reason: Type.String({ description: 'What is wrong with it.' }),
  },
  { $id: 'InvalidParam', additionalProperties: false },
)

export const ProblemSchema = Type.Object(
  {
    type: Type.String({ description: 'URN identifying the problem type; stable, switch on it.' }),
    title: Type.String({ description: 'Short summary of the problem type.' }),
    status: Type.Integer({ description: 'The HTTP status code.' }),
    detail: Type.String({ description: 'What went wrong with this request.' }),
    instance: Type.String({ description: 'The request id (also in the X-Request-Id header and the logs).' }),
    code: Type.String({ description: 'The problem type as a short snake_case code.' }),
    errors: Type.Optional(Type.Array(ref(InvalidParamSchema), { description: 'Every failing field.' })),
  },
  {
    $id: 'Problem',
    description: 'An RFC 9457 problem details object (media type application/problem+json).',
    additionalProperties: true,
  },
)

export type Problem = Static<typeof ProblemSchema>
export type InvalidParam = Static<typeof InvalidParamSchema>

/**
 * A problem that is not an HTTP response (a failed job's `error`): no `instance`, since no
 * request caused it. `title` can be made more precise than the type's.
 */
export function problemBody(code: ProblemCode, detail: string, title: string = problemTypes[code].title) {
  return { type: problemTypeUri(code), title, status: problemTypes[code].status, detail, code }
}

/** Media type of every error body. */
export const PROBLEM_MEDIA_TYPE = 'application/problem+json'

/**
 * A route's error response, for `schema.response`:
 * `response: { 404: problemResponse('No job with this id') }`.
 */
export function problemResponse(description: string) {
  return { description, content: { [PROBLEM_MEDIA_TYPE]: { schema: ref(ProblemSchema) } } }
}
