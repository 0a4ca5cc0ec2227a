import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { FastifyReply } from 'fastify'
import { createExport } from '../../app/exports/create-export.ts'
import { exportFileName, exportMediaTypes } from '../../app/exports/export-query.ts'
import { exportExpired, exportJobView } from '../../app/exports/job-view.ts'
import { decodeJobCursor, encodeJobCursor } from '../../app/jobs/cursor.ts'
import { S3Store } from '../../app/storage/s3-store.ts'
import { type ExportJobRow, findExportJob, listExportJobs, markExportDownloaded } from '../../db/exports.ts'
import { ProblemError } from '../../plugins/problem-details.ts'
import { resourceNames } from '../../resources/index.ts'
import { ref } from '../../schemas/common.ts'
import { type ExportRequest, exportSchemas } from '../../schemas/exports.ts'
import { IdempotencyHeadersSchema } from '../../schemas/imports.ts'
import { JobIdParamsSchema, listJobsQuerySchema } from '../../schemas/jobs.ts'
import { problemResponse } from '../../schemas/problem.ts'

/**
 * Async export jobs (docs/contract.md §8): start one, follow it, list them, download the file (ETag, Range,
 * If-Range). The jobs run in plugins/jobs.ts; the streaming exports are in routes/resources/.
 *
 * Longer than most route files: each operation's OpenAPI description lives beside its handler,
 * and the download's conditional and Range rules (RFC 9110) are checked here; each handler calls
 * one function.
 */
const exportRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const schemas = exportSchemas(app.resources)
  const { job: ExportJobSchema, jobList: ExportJobListSchema } = schemas
  for (const schema of [
    ...schemas.filters,
    ...schemas.requests,
    schemas.request,
    ExportJobSchema,
    ExportJobListSchema,
  ]) {
    app.addSchema(schema)
  }
  const { config, resources } = app
  const exportResourceNames = resourceNames(resources)

  async function jobOr404(id: string): Promise<ExportJobRow> {
    const job = await findExportJob(app.sql, id)
    if (!job) throw new ProblemError('not_found', `There is no export job ${id}.`)
    return job
  }

  function accepted(reply: FastifyReply, job: ExportJobRow, replayed: boolean) {
    reply.code(202).header('location', `/api/v1/exports/${job.id}`)
    if (replayed) reply.header('idempotent-replayed', 'true')
    return exportJobView(job, resources)
  }

  app.post(
    '/api/v1/exports',
    {
      schema: {
        tags: ['exports'],
        operationId: 'createExport',
        summary: 'Start an async export job that writes a file to download',
        description:
          'Answers 202 with the job and its Location. The file is written under a temporary name and renamed when complete; the job then records rows, bytes and SHA-256, and the file can be downloaded until it expires (EXPORT_TTL_SECONDS). With Idempotency-Key, the same key and body give the same job (`Idempotent-Replayed: true`), another body 422.',
        headers: IdempotencyHeadersSchema,
        body: ref(schemas.request),
        response: {
          202: {
            description: 'The job was created (or, with Idempotent-Replayed: true, created before).',
            headers: {
              location: { type: 'string', description: 'The job’s URL.' },
              'idempotent-replayed': { type: 'string', description: '`true` when this is a replay.' },
            },
            ...ref(ExportJobSchema),
          },
          409: problemResponse('A request with this Idempotency-Key is still in progress.'),
          422: problemResponse('The Idempotency-Key was used with another body.'),
        },
      },
    },
    async (request, reply) => {
      const creation = { sql: app.sql, config, log: request.log }
      const { job, replayed } = await createExport(
        creation,
        request.body as ExportRequest,
        request.headers['idempotency-key'],
      )
      return accepted(reply, job, replayed)
    },
  )

  app.get(
    '/api/v1/exports',
    {
      schema: {
        tags: ['exports'],
        operationId: 'listExports',
        summary: 'List export jobs, newest first (filter by status and resource; cursor pagination)',
        querystring: listJobsQuerySchema(exportResourceNames),
        response: {
          200: { ...ref(ExportJobListSchema), description: 'A page of jobs.' },
          400: problemResponse('The cursor is not one this service gave out.'),
        },
      },
    },
    async (request) => {
      const { status, resource, limit, cursor } = request.query
      const before = cursor ? decodeJobCursor(cursor) : undefined
      const rows = await listExportJobs(app.sql, { status, resource, before, limit: limit + 1 })
      const page = rows.slice(0, limit)
      const last = page.at(-1)
      return {
        items: page.map((row) => exportJobView(row, resources)),
        next_cursor:
          rows.length > limit && last ? encodeJobCursor({ createdAt: last.cursor_created_at, id: last.id }) : null,
      }
    },
  )

  app.get(
    '/api/v1/exports/:id',
    {
      schema: {
        tags: ['exports'],
        operationId: 'getExport',
        summary: 'An export job: status, rows and bytes written, download URL when done',
        params: JobIdParamsSchema,
        response: {
          200: { ...ref(ExportJobSchema), description: 'The job.' },
          404: problemResponse('No export job has this id.'),
        },
      },
    },
    async (request) => exportJobView(await jobOr404(request.params.id), resources),
  )

  app.get(
    '/api/v1/exports/:id/download',
    {
      schema: {
        tags: ['exports'],
        operationId: 'downloadExport',
        summary: 'The finished file (Content-Disposition, ETag, HTTP Range and If-Range)',
        description:
          'The ETag is the file’s SHA-256. One byte range (`Range: bytes=a-b`, `a-` or `-n`) gives 206; several ranges, or an If-Range that does not match, give the whole file. If-None-Match with the ETag gives 304.',
        params: JobIdParamsSchema,
        response: {
          200: {
            description: 'The whole file.',
            content: {
              'text/csv': { schema: { type: 'string' } },
              'application/x-ndjson': { schema: { type: 'string' } },
              'application/json': {
                schema: { type: 'array', items: { type: 'object' }, description: 'One element per row.' },
              },
              'application/gzip': { schema: { type: 'string', format: 'binary' } },
            },
          },
          206: { description: 'The requested byte range.', content: { '*/*': { schema: { type: 'string' } } } },
          302: {
            description:
              'With STORAGE=s3 and EXPORT_DOWNLOAD_REDIRECT=true: the file at a presigned URL of the store (`Location`, valid S3_PRESIGN_TTL_SECONDS), which answers Range requests itself.',
            type: 'null',
          },
          304: { description: 'Not modified (If-None-Match matched the ETag).', type: 'null' },
          404: problemResponse('No export job has this id.'),
          409: problemResponse('The export is not finished (or it failed).'),
          410: problemResponse('The export expired: its file was deleted.'),
          416: problemResponse('The range starts past the end of the file.'),
        },
      },
    },
    async (request, reply) => {
      const job = await jobOr404(request.params.id)
      if (job.status !== 'completed' || !job.file_name || !job.sha256) {
        throw new ProblemError('conflict', `The export is ${job.status}, not completed: there is no file to download.`)
      }
      if (exportExpired(job)) {
        throw new ProblemError(
          'gone',
          `The export expired at ${job.expires_at?.toISOString()} and its file was deleted; start a new export.`,
        )
      }
      const store = app.storage.exports
      const stored = await store.stat(job.file_name)
      if (!stored) throw new ProblemError('gone', 'The export’s file is no longer available; start a new export.')
      const size = stored.size
      const etag = `"${job.sha256}"`
      const ifRange = request.headers['if-range']
      const range = ifRange === undefined || ifRange === etag ? parseRange(request.headers.range, size) : undefined
      if (range === 'unsatisfiable') {
        reply.header('content-range', `bytes */${size}`)
        throw new ProblemError('range_not_satisfiable', `The file has ${size} bytes; the range starts past its end.`)
      }
      const gzip = job.compression === 'gzip'
      reply
        .header('etag', etag)
        .header('last-modified', (job.finished_at ?? job.created_at).toUTCString())
        .header('accept-ranges', 'bytes')
        .header('cache-control', 'private, no-cache')
        .header(
          'content-disposition',
          `attachment; filename="${exportFileName(job.resource, job.format, job.finished_at ?? job.created_at, gzip)}"`,
        )
        .type(gzip ? 'application/gzip' : exportMediaTypes[job.format])
      // Delivered (or already held by the client): the export served its purpose.
      if (!job.downloaded_at) await markExportDownloaded(app.sql, job.id)
      if (matchesEtag(request.headers['if-none-match'], etag)) return reply.code(304).send()
      if (store instanceof S3Store && app.config.EXPORT_DOWNLOAD_REDIRECT) {
        // The store serves the bytes (Range included) under a short-lived signature.
        const location = await store.presignGet(job.file_name, {
          expiresIn: app.config.S3_PRESIGN_TTL_SECONDS,
          contentDisposition: String(reply.getHeader('content-disposition')),
          contentType: String(reply.getHeader('content-type')),
        })
        return reply.code(302).header('location', location).header('cache-control', 'no-store').send()
      }
      if (range) {
        reply
          .code(206)
          .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
          .header('content-length', range.end - range.start + 1)
        return reply.send(await store.read(job.file_name, range))
      }
      reply.header('content-length', size)
      return reply.send(await store.read(job.file_name))
    },
  )

  // Any other resource in a stream URL: a clear 400 rather than a bare 404. The real routes
  // (routes/resources/) are static paths, which Fastify prefers over this parametric one.
  app.get(
    '/api/v1/exports/:resource/stream',
    { schema: { hide: true, params: Type.Object({ resource: Type.String() }) } },
    async (request) => {
      throw new ProblemError(
        'bad_request',
        `There is no resource "${request.params.resource}" to export; use one of ${exportResourceNames.join(', ')}.`,
      )
    },
  )
}

/** Whether an If-None-Match header names this ETag (or is `*`). */
function matchesEtag(header: string | undefined, etag: string): boolean {
  if (!header) return false
  return header.split(',').some((tag) => {
    const trimmed = tag.trim()
    return trimmed === '*' || trimmed === etag || trimmed === `W/${etag}`
  })
}

/**
 * One byte range of a `Range: bytes=…` header (RFC 9110 §14.1.2), clipped to the file. Several
 * ranges, another unit or a malformed header: undefined (the whole file is sent, as RFC 9110
 * allows). A range starting past the end: 'unsatisfiable'.
 */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | undefined {
  const match = header?.trim().match(/^bytes=(\d*)-(\d*)$/)
  if (!match) return undefined
  const [, first = '', last = ''] = match
  if (first === '' && last === '') return undefined
  if (first === '') {
    const suffix = Number(last)
    if (suffix === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(first)
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1)
  if (last !== '' && Number(last) < start) return undefined
  if (start >= size) return 'unsatisfiable'
  return { start, end }
}

export default exportRoutes
