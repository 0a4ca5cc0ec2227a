import { Readable } from 'node:stream'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply } from 'fastify'
import { createImport, type ImportRequest } from '../../app/imports/create-import.ts'
import { errorReport } from '../../app/imports/error-report.ts'
import { failedRecords } from '../../app/imports/failed-records.ts'
import { sendJobEvents } from '../../app/imports/job-events.ts'
import { importJobView } from '../../app/imports/job-view.ts'
import { locateSource } from '../../app/imports/source.ts'
import { decodeJobCursor, encodeJobCursor } from '../../app/jobs/cursor.ts'
import {
  findImportJob,
  findImportJobWithErrors,
  firstImportErrors,
  type ImportJobRow,
  listImportJobs,
  requestImportCancel,
} from '../../db/imports.ts'
import { watchJob } from '../../db/job-queue.ts'
import { ProblemError } from '../../plugins/problem-details.ts'
import { resourceNames } from '../../resources/index.ts'
import { ref } from '../../schemas/common.ts'
import {
  ErrorsQuerySchema,
  IdempotencyHeadersSchema,
  type ImportFromUrl,
  importSchemas,
  RecordErrorSchema,
} from '../../schemas/imports.ts'
import { JobIdParamsSchema, listJobsQuerySchema } from '../../schemas/jobs.ts'
import { problemResponse } from '../../schemas/problem.ts'

const FIRST_ERRORS = 20

/** A JSON import request: a URL, or a direct upload's id (one of the two). */
function jsonImportRequest(body: ImportFromUrl): ImportRequest {
  const options = { resource: body.resource, format: body.format, dryRun: body.dry_run }
  if ((body.url === undefined) === (body.upload_id === undefined)) {
    const reason = body.url === undefined ? 'is required (or upload_id)' : 'must not be given with upload_id'
    throw new ProblemError('validation_failed', `body.url ${reason}.`, {
      errors: [{ in: 'body', name: 'url', pointer: '/url', reason }],
    })
  }
  return body.url !== undefined
    ? { kind: 'url', url: body.url, ...options }
    : { kind: 'stored', uploadId: body.upload_id as string, ...options }
}

/**
 * Import jobs (docs/contract.md §6): start one from an upload or a URL, follow it, read its errors and its
 * rejected records, cancel it. The jobs themselves run in plugins/jobs.ts.
 *
 * Longer than most route files: seven operations, each with its OpenAPI description beside its
 * handler; every handler parses, calls one function (app/imports/), and replies.
 */
const importRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const names = resourceNames(app.resources)
  const {
    job: ImportJobSchema,
    fromUrl: ImportFromUrlSchema,
    upload: ImportUploadSchema,
    jobList: ImportJobListSchema,
  } = importSchemas(names)
  for (const schema of [
    RecordErrorSchema,
    ImportJobSchema,
    ImportFromUrlSchema,
    ImportUploadSchema,
    ImportJobListSchema,
  ]) {
    app.addSchema(schema)
  }
  const { config } = app

  async function jobBody(job: ImportJobRow) {
    return importJobView(job, await firstImportErrors(app.sql, job.id, FIRST_ERRORS))
  }

  async function jobOr404(id: string): Promise<ImportJobRow> {
    const job = await findImportJob(app.sql, id)
    if (!job) throw new ProblemError('not_found', `There is no import job ${id}.`)
    return job
  }

  function accepted(reply: FastifyReply, job: ImportJobRow, replayed: boolean) {
    reply.code(202).header('location', `/api/v1/imports/${job.id}`)
    if (replayed) reply.header('idempotent-replayed', 'true')
    return jobBody(job)
  }

  app.post(
    '/api/v1/imports',
    {
      config: { multipartBody: ImportUploadSchema },
      schema: {
        tags: ['imports'],
        operationId: 'createImport',
        summary: 'Start an import job from an uploaded file (multipart) or a URL (JSON)',
        description:
          'multipart/form-data: `file` (CSV, NDJSON or JSON array, optionally gzip) and `resource` [+ `format`, `dry_run`]; the file streams to the store. application/json: `{resource, url, format?, dry_run?}`: the job downloads the URL (or reads a s3:// object of S3_IMPORT_BUCKETS where it is); or `{resource, upload_id, format?, dry_run?}`: a completed direct upload (POST /api/v1/uploads). Answers 202 with the job and its Location. With Idempotency-Key, the same key and payload give the same job (`Idempotent-Replayed: true`), another payload 422, a key still in use 409.',
        headers: IdempotencyHeadersSchema,
        body: { content: { 'application/json': { schema: ref(ImportFromUrlSchema) } } },
        response: {
          202: {
            description: 'The job was created (or, with Idempotent-Replayed: true, created before).',
            headers: {
              location: { type: 'string', description: 'The job’s URL.' },
              'idempotent-replayed': { type: 'string', description: '`true` when this is a replay.' },
            },
            ...ref(ImportJobSchema),
          },
          409: problemResponse('A request with this Idempotency-Key is still in progress.'),
          413: problemResponse('The upload is larger than UPLOAD_MAX_BYTES.'),
          415: problemResponse('Neither multipart/form-data nor application/json.'),
          422: problemResponse(
            'The source cannot be imported (empty, binary, not a JSON array, CSV header lacking required columns, private URL…) or the Idempotency-Key was used with another payload.',
          ),
        },
      },
    },
    async (request, reply) => {
      // Fastify also parses text/plain, which the JSON body schema does not cover: refuse it here.
      const mediaType = request.headers['content-type']?.split(';')[0]?.trim().toLowerCase()
      if (!request.isMultipart() && mediaType !== 'application/json') {
        throw new ProblemError(
          'unsupported_media_type',
          `Send multipart/form-data (a file) or application/json (a URL), not ${mediaType}.`,
        )
      }
      const asked: ImportRequest = request.isMultipart()
        ? { kind: 'upload', request }
        : jsonImportRequest(request.body as ImportFromUrl)
      const creation = {
        sql: app.sql,
        config,
        stores: app.storage,
        resources: app.resources,
        log: request.log,
      }
      const { job, replayed } = await createImport(creation, asked, request.headers['idempotency-key'])
      return accepted(reply, job, replayed)
    },
  )

  app.get(
    '/api/v1/imports',
    {
      schema: {
        tags: ['imports'],
        operationId: 'listImports',
        summary: 'List import jobs, newest first (filter by status and resource; cursor pagination)',
        querystring: listJobsQuerySchema(names),
        response: { 200: { ...ref(ImportJobListSchema), description: 'A page of jobs.' } },
      },
    },
    async (request) => {
      const { status, resource, limit, cursor } = request.query
      const before = cursor ? decodeJobCursor(cursor) : undefined
      const rows = await listImportJobs(app.sql, { status, resource, before, limit: limit + 1 }, FIRST_ERRORS)
      const page = rows.slice(0, limit)
      const last = page.at(-1)
      return {
        items: page.map(({ first_errors, ...job }) => importJobView(job, first_errors)),
        next_cursor:
          rows.length > limit && last ? encodeJobCursor({ createdAt: last.cursor_created_at, id: last.id }) : null,
      }
    },
  )

  app.get(
    '/api/v1/imports/:id',
    {
      schema: {
        tags: ['imports'],
        operationId: 'getImport',
        summary: 'An import job: status, counters, progress, first errors',
        params: JobIdParamsSchema,
        response: {
          200: { ...ref(ImportJobSchema), description: 'The job.' },
          404: problemResponse('No import job has this id.'),
        },
      },
    },
    async (request) => {
      const found = await findImportJobWithErrors(app.sql, request.params.id, FIRST_ERRORS)
      if (!found) throw new ProblemError('not_found', `There is no import job ${request.params.id}.`)
      return importJobView(found.job, found.errors)
    },
  )

  app.get(
    '/api/v1/imports/:id/errors',
    {
      schema: {
        tags: ['imports'],
        operationId: 'getImportErrors',
        summary: 'Every per-record error of a job, streamed as NDJSON or CSV',
        params: JobIdParamsSchema,
        querystring: ErrorsQuerySchema,
        response: {
          200: {
            description:
              'One error per line (NDJSON), or a CSV with the columns line,record,id,field,code,message,value.',
            content: {
              'application/x-ndjson': { schema: ref(RecordErrorSchema) },
              'text/csv': { schema: { type: 'string' } },
            },
          },
          404: problemResponse('No import job has this id.'),
        },
      },
    },
    async (request, reply) => {
      const job = await jobOr404(request.params.id)
      const format = request.query.format === 'csv' ? 'csv' : 'ndjson'
      reply
        .type(format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8')
        .header('content-disposition', `attachment; filename="import-${job.id}-errors.${format}"`)
      return reply.send(Readable.from(errorReport(app.sql, job.id, format)))
    },
  )

  app.get(
    '/api/v1/imports/:id/failed-records',
    {
      schema: {
        tags: ['imports'],
        operationId: 'getImportFailedRecords',
        summary: 'The rejected records exactly as uploaded, in the same format (CSV header kept)',
        params: JobIdParamsSchema,
        response: {
          200: {
            description:
              'A file of the source’s format with only the failed records, byte for byte (a JSON element that was not valid JSON comes back as it was).',
            content: {
              'text/csv': { schema: { type: 'string' } },
              'application/x-ndjson': { schema: { type: 'string' } },
              'application/json': {
                schema: {
                  type: 'array',
                  items: { description: 'A rejected element as uploaded: an object, or the value that was not one.' },
                },
              },
            },
          },
          404: problemResponse('No import job has this id.'),
          409: problemResponse('The job has no source file yet (a URL job not yet downloaded).'),
        },
      },
    },
    async (request, reply) => {
      const job = await jobOr404(request.params.id)
      if (!job.source_path || !job.format) {
        throw new ProblemError('conflict', 'The job has no source file yet: its URL is not downloaded.')
      }
      const types = { csv: 'text/csv', ndjson: 'application/x-ndjson', json: 'application/json' }
      reply
        .type(`${types[job.format]}; charset=utf-8`)
        .header('content-disposition', `attachment; filename="import-${job.id}-failed-records.${job.format}"`)
      return reply.send(Readable.from(failedRecords(app.sql, job, locateSource(app.storage, job.source_path))))
    },
  )

  app.get(
    '/api/v1/imports/:id/events',
    {
      schema: {
        tags: ['imports'],
        operationId: 'getImportEvents',
        summary: 'Live progress as server-sent events until the job is done',
        description:
          'Sends `event: progress` with the job (as GET /api/v1/imports/{id}) whenever it changes, then `event: done` with the final job, and closes.',
        params: JobIdParamsSchema,
        response: {
          200: {
            description: 'A text/event-stream.',
            content: { 'text/event-stream': { schema: { type: 'string' } } },
          },
          404: problemResponse('No import job has this id.'),
        },
      },
    },
    async (request, reply) => {
      const job = await jobOr404(request.params.id)
      reply.hijack()
      await sendJobEvents({
        request: request.raw,
        response: reply.raw,
        requestId: String(request.id),
        // One round trip a poll: the job with its first errors.
        current: async () => {
          const found = await findImportJobWithErrors(app.sql, job.id, FIRST_ERRORS)
          return found ? importJobView(found.job, found.errors) : jobBody(job)
        },
        draining: () => app.lifecycle.draining,
        // Its end is sent as it happens (the NOTIFY of finishImportJob), not at the next read.
        subscribe: (changed) => watchJob(app.sql, job.id, changed),
      })
    },
  )

  app.post(
    '/api/v1/imports/:id/cancel',
    {
      schema: {
        tags: ['imports'],
        operationId: 'cancelImport',
        summary: 'Stop a queued or running job; committed batches stay',
        params: JobIdParamsSchema,
        response: {
          202: {
            ...ref(ImportJobSchema),
            description: 'Cancelled (queued job) or cancelling at the next batch (running job).',
          },
          404: problemResponse('No import job has this id.'),
          409: problemResponse('The job is already done.'),
        },
      },
    },
    async (request, reply) => {
      const cancel = await requestImportCancel(app.sql, request.params.id)
      if (!cancel) throw new ProblemError('not_found', `There is no import job ${request.params.id}.`)
      // A cancelled job was done before this request too: cancelling it again is a conflict.
      if (cancel.alreadyDone) throw new ProblemError('conflict', `The job is already ${cancel.job.status}.`)
      reply.code(202)
      return jobBody(cancel.job)
    },
  )
}

export default importRoutes
