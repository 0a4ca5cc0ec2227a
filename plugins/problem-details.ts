import { STATUS_CODES } from 'node:http'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { SourceRejected } from '../app/imports/source.ts'
import { StoreError } from '../app/storage/object-store.ts'
import { isDatabaseUnavailable } from '../db/errors.ts'
import { IdempotencyKeyLost } from '../db/idempotency.ts'
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

// Every error becomes an RFC 9457 problem here: thrown problems, validation errors (with their
// invalid params), the errors of the database and of uploads, 404 and 405 (with Allow). A little
// longer than most plugins: the mapping of every error to its problem is in this one place, so
// that route handlers only throw.

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
 * names them itself: 400 when it validates input, 413 and 415 when it reads a body (Fastify's
 * body limit and content-type parsers answer them before the handler), 401 under /api/, 500
 * everywhere.
 */
function documentCommonErrors(route: RouteOptions): void {
  const schema = route.schema
  if (!schema || schema.hide) return
  const response = (schema.response ?? {}) as Record<string, unknown>
  if (schema.body || schema.querystring || schema.params || schema.headers) {
    response[400] ??= problemResponse('The request does not match the schema; `errors` lists every failing field.')
  }
  if (schema.body) {
    response[413] ??= problemResponse('The body is larger than BODY_LIMIT_BYTES.')
    response[415] ??= problemResponse('The body is of a media type this operation does not read.')
  }
  if (route.url.startsWith('/api/') || route.url === '/metrics') {
    response[401] ??= problemResponse('An API key is required (only when the service has API_KEYS set).')
  }
  response[500] ??= problemResponse('Unexpected failure; the body is generic, the log line has the details.')
  schema.response = response
}

/** Methods in the order an Allow header lists them; methods of no route are never listed. */
const methodOrder = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']

/** A route pattern's segments: a string, or null for a parameter (`:id`). */
type PatternSegments = (string | null)[]

function patternSegments(url: string): PatternSegments {
  return url.split('/').map((segment) => (segment.startsWith(':') ? null : segment))
}

function matchesPattern(pattern: PatternSegments, path: string): boolean {
  const segments = path.split('/')
  return (
    segments.length === pattern.length &&
    pattern.every((segment, index) => (segment === null ? segments[index] !== '' : segment === segments[index]))
  )
}

/**
 * For a 405: the methods a path has routes for (HEAD included where GET is, as Fastify serves
 * it), found by asking the router itself, so that parametric paths match as they would for a
 * request. Two kinds of match do not count:
 * - the router's own answer to an over-long parameter (over maxParamLength), which comes with a
 *   handler of its own while every route shares Fastify's one route handler;
 * - a hidden /api/ route: every real API route is in the OpenAPI document, so a hidden one is a
 *   fallback that only words a refusal (GET /api/v1/exports/:resource/stream, for a resource that
 *   does not exist) and makes no method of such a path "allowed". Its patterns are plain
 *   `:name` segments, compared by shape.
 */
function methodsOfPaths(app: FastifyInstance): (path: string) => string[] {
  const methods = new Set<string>()
  const fallbacks: { method: string; pattern: PatternSegments; parameters: string }[] = []
  let knownRoute: { method: string; url: string } | undefined
  app.addHook('onRoute', (route) => {
    const routeMethods = Array.isArray(route.method) ? route.method : [route.method]
    for (const method of routeMethods) {
      methods.add(method)
      if (route.schema?.hide && route.url.startsWith('/api/')) {
        const parameters = [...route.url.matchAll(/:(\w+)/g)].map((match) => match[1]).join('/')
        fallbacks.push({ method, pattern: patternSegments(route.url), parameters })
      }
      if (!knownRoute && !/[:*]/.test(route.url)) knownRoute = { method, url: route.url }
    }
  })
  let routeHandler: unknown
  app.addHook('onReady', async () => {
    if (knownRoute)
      routeHandler = app.findRoute({ method: knownRoute.method as HTTPMethods, url: knownRoute.url })?.handler
  })
  const ordered = () => [
    ...methodOrder.filter((method) => methods.has(method)),
    ...[...methods].filter((method) => !methodOrder.includes(method)).sort(),
  ]
  return (path) =>
    ordered().filter((method) => {
      const found = app.findRoute({ method: method as HTTPMethods, url: path })
      if (!found || found.handler !== routeHandler) return false
      const parameters = Object.keys(found.params).join('/')
      return !fallbacks.some(
        (fallback) =>
          fallback.method === method && fallback.parameters === parameters && matchesPattern(fallback.pattern, path),
      )
    })
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

    const allowedMethods = methodsOfPaths(app)
    app.setNotFoundHandler((request, reply) => {
      const path = pathOf(request)
      // Reached only after authentication (plugins/auth.ts answers 401 first under /api/), so
      // the Allow header tells nothing to a caller without a key.
      const allow = allowedMethods(path)
      if (allow.length === 0) return reply.problem('not_found', `There is no route ${request.method} ${path}.`)
      reply.header('allow', allow.join(', '))
      return reply.problem(
        'method_not_allowed',
        `${path} does not support ${request.method}; it supports ${allow.join(', ')}.`,
      )
    })

    app.setErrorHandler((error: FastifyError, request, reply) => {
      if (error instanceof ProblemError) {
        return reply.problem(error.code, error.message, error.extensions)
      }
      // The errors of the app's own steps that a client caused, each as its problem.
      if (error instanceof SourceRejected) {
        return reply.problem('unprocessable', `${error.message.charAt(0).toUpperCase()}${error.message.slice(1)}.`)
      }
      if (error instanceof IdempotencyKeyLost) {
        return reply.problem(
          'conflict',
          'Another request took this Idempotency-Key over while this one ran (it went silent for too long); send the request again with the same key to get the job.',
        )
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
      if (error instanceof StoreError) {
        // The store's failure, never the client's: said plainly, with a retry for a store that is away.
        request.log.error({ err: error }, 'object store request failed')
        reply.header('Retry-After', '5')
        return reply.problem(
          'store_unavailable',
          error.kind === 'unavailable'
            ? 'The object store is unavailable; retry shortly.'
            : 'The object store refused the request; retry shortly, and tell the operator if it persists.',
        )
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
