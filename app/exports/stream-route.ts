import { PassThrough } from 'node:stream'
import { createGzip } from 'node:zlib'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { exportCopyStatement } from '../../db/exports.ts'
import { ProblemError } from '../../plugins/problem-details.ts'
import type { ResourceDescriptor } from '../../resources/index.ts'
import { streamQuerySchema } from '../../schemas/exports.ts'
import { problemResponse } from '../../schemas/problem.ts'
import { copyExport, ExportAborted } from './copy-export.ts'
import { exportFileName, exportMediaTypes, exportQuery } from './export-query.ts'

/**
 * GET /api/v1/exports/<resource>/stream for one resource (routes/resources/index.ts registers
 * it for each): its querystring schema carries the resource's own filters, so the OpenAPI
 * document shows them. PostgreSQL produces the bytes (app/exports/copy-export.ts) from one snapshot.
 */
export function exportStreamRoute(descriptor: ResourceDescriptor): FastifyPluginAsyncTypebox {
  const resource = descriptor.name
  return async (app) => {
    const { config } = app
    app.get(
      `/api/v1/exports/${resource}/stream`,
      {
        // `fields=id,email` and `fields=id&fields=email` both name two fields.
        preValidation: async (request: FastifyRequest) => {
          const query = request.query as { fields?: string | string[] }
          if (query.fields === undefined) return
          const values = Array.isArray(query.fields) ? query.fields : [query.fields]
          query.fields = values.flatMap((value) => value.split(',')).map((field) => field.trim())
        },
        schema: {
          tags: ['exports'],
          operationId: `stream${resource[0]?.toUpperCase()}${resource.slice(1)}Export`,
          summary: `Stream every ${resource.slice(0, -1)} matching the filters, each once, from one snapshot`,
          description:
            'The body streams as PostgreSQL produces it (gzip when the request accepts it). A failure before the first row is a problem; one later cuts the response short (no final chunk), so a client can tell an incomplete download.',
          querystring: streamQuerySchema(descriptor),
          response: {
            200: {
              description: 'The rows: CSV with a header row, NDJSON, or a JSON array.',
              content: {
                'text/csv': { schema: { type: 'string' } },
                'application/x-ndjson': { schema: { type: 'string' } },
                'application/json': { schema: { type: 'array', items: { type: 'object' } } },
              },
            },
            429: problemResponse('EXPORT_MAX_STREAMS streams are running; retry after a few seconds.'),
          },
        },
      },
      async (request, reply) => {
        const { format, fields, ...filters } = request.query as {
          format: 'csv' | 'ndjson' | 'json'
          fields?: string[]
        } & Record<string, string | boolean | undefined>
        const query = exportQuery(descriptor, { format, fields, filters }, config.EXPORT_CSV_ESCAPE_FORMULAS)
        const statement = exportCopyStatement(query)
        const release = app.exports.acquireStream(resource)
        if (!release) {
          reply.header('retry-after', '5')
          throw new ProblemError(
            'too_many_requests',
            `${config.EXPORT_MAX_STREAMS} exports are streaming already (EXPORT_MAX_STREAMS); retry in a few seconds.`,
          )
        }
        const gzip = acceptsGzip(request.headers['accept-encoding'])
        const body = gzip ? createGzip({ level: config.EXPORT_GZIP_LEVEL }) : new PassThrough()
        // A failure reaches the client through `done` below: as a problem, or as a response cut
        // short. The body's own 'error' event must not also stop the process in the moments
        // before Fastify listens to it (its onSend hooks run between send and its listener).
        body.on('error', () => {})
        // A client that leaves, even before the body is handed to Fastify, ends the export (and
        // so frees its slot and connection), whatever the state of the data path.
        reply.raw.on('close', () => {
          if (!reply.raw.writableFinished) body.destroy()
        })
        const started = Promise.withResolvers<void>()
        let handedOver = false
        const begun = performance.now()
        const done = copyExport(app.exports.sql, statement, body, {
          format,
          control: app.sql,
          onStart: () => {
            handedOver = true
            started.resolve()
          },
        })
        done
          .then(
            ({ rows, bytes }) => {
              body.end()
              const seconds = (performance.now() - begun) / 1000
              app.exports.metrics.finished({ resource, format, mode: 'stream' }, rows, bytes, seconds)
              request.log.info({ resource, format, rows, bytes, seconds }, 'export streamed')
            },
            (error) => {
              // Before the hand-over the error handler answers with a problem (the await below
              // throws); the body was never anyone's to read.
              if (!handedOver) {
                body.destroy()
                return
              }
              if (error instanceof ExportAborted)
                request.log.info({ resource, format }, `export stopped: ${error.message}`)
              else request.log.error({ err: error }, 'export failed while streaming')
              // Fastify answers a problem if no byte has left yet, else cuts the response short.
              body.destroy(error)
            },
          )
          .finally(release)
        // Until PostgreSQL accepts the statement, a failure is still a problem response.
        await Promise.race([started.promise, done])
        reply
          .type(exportMediaTypes[format])
          .header('cache-control', 'no-store')
          .header('content-disposition', `attachment; filename="${exportFileName(resource, format, new Date())}"`)
          .header('vary', 'accept-encoding')
        if (gzip) reply.header('content-encoding', 'gzip')
        return reply.send(body)
      },
    )
  }
}

/** Whether an Accept-Encoding header admits gzip (`gzip`, `x-gzip` or `*`, with a q above 0). */
export function acceptsGzip(header: string | undefined): boolean {
  if (!header) return false
  return header.split(',').some((part) => {
    const [coding, ...parameters] = part.trim().toLowerCase().split(';')
    if (coding !== 'gzip' && coding !== 'x-gzip' && coding !== '*') return false
    const q = parameters.map((parameter) => parameter.trim()).find((parameter) => parameter.startsWith('q='))
    return q === undefined || Number(q.slice(2)) > 0
  })
}
