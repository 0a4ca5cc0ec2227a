import { randomUUID } from 'node:crypto'
import { STATUS_CODES } from 'node:http'
import path from 'node:path'
import type { Duplex } from 'node:stream'
import { fileURLToPath } from 'node:url'
import autoLoad from '@fastify/autoload'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyReply,
} from 'fastify'
import fp from 'fastify-plugin'
import type { DatabaseOptions } from '../plugins/db.ts'
import type { JobFaults } from '../plugins/jobs.ts'
import { requestId } from '../plugins/request-id.ts'
import type { ResourceDescriptor } from '../resources/index.ts'
import type { Config } from '../schemas/config.ts'
import { PROBLEM_MEDIA_TYPE, type ProblemCode, problemBody, problemTypes, problemTypeUri } from '../schemas/problem.ts'
import { isTimestampWithZone } from '../schemas/record-formats.ts'
import { schemaController } from './schema-compilers.ts'

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))

export interface AppOptions {
  config: Config
  database: DatabaseOptions
  /**
   * The resources to serve (resources/): by default users, articles and comments. Tests add one
   * to prove that a resource is one descriptor and one migration.
   */
  resources?: readonly ResourceDescriptor[]
  /** Faults injected by tests (plugins/jobs.ts); never set by the service itself. */
  faults?: JobFaults
  /**
   * Node.js options for the job thread and its validation threads; by default they inherit the
   * process's own. Tests pass none: the test runner's module hooks, of no use in those threads,
   * would double the time each thread takes to start.
   */
  threadExecArgv?: string[]
}

/** The root plugin: every shared plugin of plugins/, then every route plugin of routes/. */
const app: FastifyPluginAsync<AppOptions> = async (fastify, options) => {
  await fastify.register(autoLoad, { dir: path.join(root, 'plugins'), options })
  await fastify.register(autoLoad, {
    dir: path.join(root, 'routes'),
    options,
    // Routes spell out their whole path, so a path found in openapi.yaml can be grepped.
    dirNameRoutePrefix: false,
  })
}
export default app

/**
 * Errors Node's HTTP parser raises before Fastify sees a request (a header section over 16 KiB,
 * a malformed request line, a client too slow to send its request): answered with a problem too,
 * then the connection is closed.
 */
function answerClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
  if (socket.destroyed || !socket.writable) return
  const code: ProblemCode =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? 'headers_too_large'
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? 'request_timeout'
        : 'bad_request'
  const { status, title } = problemTypes[code]
  const detail =
    code === 'headers_too_large'
      ? 'The request headers are larger than the server accepts (16 KiB).'
      : code === 'request_timeout'
        ? 'The request was not received in time.'
        : 'The request could not be parsed as HTTP.'
  const body = JSON.stringify({ type: problemTypeUri(code), title, status, detail, instance: randomUUID(), code })
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${PROBLEM_MEDIA_TYPE}\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  )
}

/**
 * Builds the whole service on the given configuration, not yet listening. app/server.ts adds
 * the process around it; tests call this directly.
 */
export async function buildApp(options: AppOptions, loggerInstance?: FastifyBaseLogger): Promise<FastifyInstance> {
  const { config } = options
  const fastify = Fastify({
    ...(loggerInstance ? { loggerInstance } : { logger: { level: config.LOG_LEVEL } }),
    genReqId: requestId,
    bodyLimit: config.BODY_LIMIT_BYTES,
    keepAliveTimeout: config.HTTP_KEEP_ALIVE_TIMEOUT_MS,
    requestTimeout: config.HTTP_REQUEST_TIMEOUT_MS,
    return503OnClosing: true,
    clientErrorHandler: answerClientError,
    // The router's own refusals (a path it cannot decode, a path parameter over 100 characters)
    // answer with a problem like every other error, not Fastify's plain JSON.
    // The reply here is not yet decorated (this runs before routing), hence the body by hand.
    frameworkErrors: (error, request, reply) => {
      const detail =
        error.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? 'A path segment is longer than 100 characters; no route takes one that long.'
          : 'The path cannot be decoded: each percent sign must start an escape of UTF-8 (%XX).'
      const body = { ...problemBody('bad_request', detail), instance: String(request.id) }
      return (reply as unknown as FastifyReply)
        .code(body.status)
        .type(PROBLEM_MEDIA_TYPE)
        .header('x-request-id', body.instance)
        .send(body)
    },
    schemaController,
    ajv: {
      // Report every failing field at once, and reject unknown fields instead of dropping them.
      customOptions: {
        allErrors: true,
        removeAdditional: false,
        coerceTypes: 'array',
        useDefaults: true,
        // A body of several shapes chosen by one property (an export's `resource`).
        discriminator: true,
        // Timestamps that PostgreSQL can hold, by the very check import records pass (an export
        // filter beyond them failed in the database, after the request had been accepted).
        formats: { 'date-time-with-zone': isTimestampWithZone },
      },
    },
  }).withTypeProvider<TypeBoxTypeProvider>()
  // Not encapsulated: decorations (app.migrations, app.swagger, …) must reach this instance.
  await fastify.register(fp(app), options)
  return fastify
}
