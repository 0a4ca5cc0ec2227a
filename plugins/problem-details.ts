import { STATUS_CODES } from 'node:http'
import type { FastifyError, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { isDatabaseUnavailable } from '../db/errors.ts'
import {
  type InvalidParam,
  InvalidParamSchema,
  PROBLEM_MEDIA_TYPE,
  type ProblemCode,
  ProblemSchema,
  problemResponse,
  problemTypes,
  problemTypeUri,
} from '../schemas/problem.ts'

declare module 'fastify' {
  interface FastifyReply {
    /**
     * Sends an RFC 9457 problem; status and title come from the code (schemas/problem.ts) unless
     * `extensions.status` overrides the status.
     */
    problem(code: ProblemCode, detail: string, extensions?: Record<string, unknown>): FastifyReply
  }
}

/** Throw this from a handler or hook to answer with a problem instead of a 500. */
export class ProblemError extends Error {
  readonly code: ProblemCode
  readonly extensions: Record<string, unknown>

  constructor(code: ProblemCode, detail: string, extensions: Record<string, unknown> = {}) {
    super(detail)
    this.name = 'ProblemError'
    this.code = code
    this.extensions = extensions
  }
}

/** Fastify's own client-error codes, mapped to ours; their messages are safe to show. */
const fastifyErrorCodes: Record<string, ProblemCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'bad_request',
  FST_ERR_CTP_INVALID_JSON_BODY: 'bad_request',
}

const codeByStatus = new Map<number, ProblemCode>(
  Object.entries(problemTypes)
    .reverse()
    .map(([code, { status }]) => [status, code as ProblemCode]),
)

/** The route pattern's parts that carry input: a failing value is reported with its part. */
type ValidationPart = 'body' | 'querystring' | 'params' | 'headers'

interface AjvError {
  instancePath: string
  keyword: string
  message?: string
  params: Record<string, unknown>
}

function invalidParams(part: ValidationPart, errors: AjvError[]): InvalidParam[] {
  // A body chosen by a discriminator (an export's `resource`) also reports a bad tag through
  // the tag's own enum; the discriminator's error says the same less clearly.
  const tagged = errors.filter((error) => error.keyword !== 'discriminator')
  return (tagged.length > 0 ? tagged : errors).map((error) => {
    const missing = error.keyword === 'required' ? String(error.params.missingProperty) : undefined
    const extra = error.keyword === 'additionalProperties' ? String(error.params.additionalProperty) : undefined
    const pointer = `${error.instancePath}${missing || extra ? `/${missing ?? extra}` : ''}`
    const name = pointer.split('/').slice(1).join('.')
    let reason = error.message ?? 'is invalid'
    if (missing) reason = 'is required'
    else if (extra) reason = 'is not a known field'
    else if (error.keyword === 'enum') reason = `must be one of ${(error.params.allowedValues as unknown[]).join(', ')}`
    return { in: part, name, pointer, reason }
  })
}

function describe(params: InvalidParam[]): string {
  const listed = params.slice(0, 5).map((param) => `${param.in}${param.name ? `.${param.name}` : ''} ${param.reason}`)
  const more = params.length > 5 ? ` (and ${params.length - 5} more)` : ''
  return `${listed.join('; ')}${more}.`
}

function pathOf(request: FastifyRequest): string {
  return request.url.split('?')[0] ?? request.url
}

/**
 * Adds the error responses every route can give to its OpenAPI description, unless the route
 * names them itself: 400 when it validates input, 401 under /api/, 500 everywhere.
 */
function documentCommonErrors(route: RouteOptions): void {
  const schema = route.schema
  if (!schema || schema.hide) return
  const response = (schema.response ?? {}) as Record<string, unknown>
  if (schema.body || schema.querystring || schema.params || schema.headers) {
    response[400] ??= problemResponse('The request does not match the schema; `errors` lists every failing field.')
  }
  if (route.url.startsWith('/api/') || route.url === '/metrics') {
    response[401] ??= problemResponse('An API key is required (only when the service has API_KEYS set).')
  }
  response[500] ??= problemResponse('Unexpected failure; the body is generic, the log line has the details.')
  schema.response = response
}

/**
 * One error format for the whole service: every error leaves as application/problem+json.
 * 5xx bodies are generic; the log line (with the request id) has the cause.
 */
export default fp(
  async (app) => {
    app.addSchema(InvalidParamSchema)
    app.addSchema(ProblemSchema)
    app.addHook('onRoute', documentCommonErrors)

    app.decorateReply('problem', function problem(this: FastifyReply, code, detail, extensions = {}) {
      const catalogued = problemTypes[code]
      // A client error Fastify raised with a status we have no code for keeps its status.
      const status = typeof extensions.status === 'number' ? extensions.status : catalogued.status
      const title = status === catalogued.status ? catalogued.title : (STATUS_CODES[status] ?? catalogued.title)
      const body = {
        ...extensions,
        type: problemTypeUri(code),
        title,
        status,
        detail,
        instance: String(this.request.id),
        code,
      }
      return this.code(status).type(PROBLEM_MEDIA_TYPE).send(body)
    })

    app.setNotFoundHandler((request, reply) => {
      reply.problem('not_found', `There is no route ${request.method} ${pathOf(request)}.`)
    })

    app.setErrorHandler((error: FastifyError, request, reply) => {
      if (error instanceof ProblemError) {
        return reply.problem(error.code, error.message, error.extensions)
      }
      if (error.validation) {
        const part = (error.validationContext ?? 'body') as ValidationPart
        const errors = invalidParams(part, error.validation as AjvError[])
        return reply.problem('validation_failed', describe(errors), { errors })
      }
      const mapped = error.code ? fastifyErrorCodes[error.code] : undefined
      if (mapped) return reply.problem(mapped, error.message)
      if (isDatabaseUnavailable(error)) {
        request.log.error({ err: error }, 'database unavailable')
        reply.header('Retry-After', '5')
        return reply.problem('database_unavailable', 'The database is unavailable; retry shortly.')
      }
      const status = error.statusCode ?? 500
      if (status >= 400 && status < 500) {
        return reply.problem(codeByStatus.get(status) ?? 'bad_request', error.message, { status })
      }
      request.log.error({ err: error }, 'request failed')
      return reply.problem(
        'internal_error',
        'An unexpected error occurred. Quote the instance (request id) when reporting it.',
      )
    })
  },
  { name: 'problem-details' },
)
