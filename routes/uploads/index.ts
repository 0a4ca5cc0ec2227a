import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { abortUpload, completeUpload, createUpload, getUpload } from '../../app/imports/direct-upload.ts'
import { ref } from '../../schemas/common.ts'
import { JobIdParamsSchema } from '../../schemas/jobs.ts'
import { problemResponse } from '../../schemas/problem.ts'
import { CompleteUploadSchema, CreateUploadSchema, UploadSchema } from '../../schemas/uploads.ts'

/**
 * Direct uploads (app/imports/direct-upload.ts): presigned URLs into the imports' bucket for
 * files too large to send through the service; an import then names the upload (`upload_id`).
 */
const uploadRoutes: FastifyPluginAsyncTypebox = async (app) => {
  for (const schema of [CreateUploadSchema, UploadSchema, CompleteUploadSchema]) app.addSchema(schema)
  const uploads = () => ({
    sql: app.sql,
    stores: app.storage,
    partBytes: app.config.S3_PART_BYTES,
    ttlSeconds: app.config.S3_PRESIGN_TTL_SECONDS,
  })
  const notS3 = problemResponse('The service keeps files in directories (STORAGE=fs): no direct uploads.')

  app.post(
    '/api/v1/uploads',
    {
      schema: {
        tags: ['uploads'],
        operationId: 'createUpload',
        summary: 'Start a direct upload into the object store (presigned URLs)',
        description:
          'For large files (STORAGE=s3): answers presigned PUT URLs, one for a file up to S3_PART_BYTES, else one per part of S3_PART_BYTES (or more, for files of more than 10,000 parts). PUT the bytes, keep each part’s ETag, POST to `complete_url`, then start the import with `{resource, upload_id}`.',
        body: ref(CreateUploadSchema),
        response: { 201: { ...ref(UploadSchema), description: 'The upload, with its URLs.' }, 409: notS3 },
      },
    },
    async (request, reply) => {
      const upload = await createUpload(uploads(), request.body)
      return reply.code(201).header('location', `/api/v1/uploads/${upload.id}`).send(upload)
    },
  )

  app.get(
    '/api/v1/uploads/:id',
    {
      schema: {
        tags: ['uploads'],
        operationId: 'getUpload',
        summary: 'A direct upload, with its presigned URLs while it is pending (valid until expires_at)',
        params: JobIdParamsSchema,
        response: {
          200: { ...ref(UploadSchema), description: 'The upload.' },
          404: problemResponse('No upload has this id.'),
          409: notS3,
        },
      },
    },
    async (request) => getUpload(uploads(), request.params.id),
  )

  app.post(
    '/api/v1/uploads/:id/complete',
    {
      schema: {
        tags: ['uploads'],
        operationId: 'completeUpload',
        summary: 'Complete a direct upload once every byte is up',
        params: JobIdParamsSchema,
        body: ref(CompleteUploadSchema),
        response: {
          200: { ...ref(UploadSchema), description: 'The completed upload: an import may name it.' },
          404: problemResponse('No upload has this id.'),
          409: problemResponse('Nothing (or not every part) was uploaded, the upload was aborted, or STORAGE=fs.'),
        },
      },
    },
    async (request) => completeUpload(uploads(), request.params.id, request.body),
  )

  app.delete(
    '/api/v1/uploads/:id',
    {
      schema: {
        tags: ['uploads'],
        operationId: 'abortUpload',
        summary: 'Abort a pending direct upload (its parts are deleted)',
        params: JobIdParamsSchema,
        response: {
          204: { description: 'Aborted.', type: 'null' },
          404: problemResponse('No upload has this id.'),
          409: problemResponse('The upload is not pending, or STORAGE=fs.'),
        },
      },
    },
    async (request, reply) => {
      await abortUpload(uploads(), request.params.id)
      return reply.code(204).send()
    },
  )
}

export default uploadRoutes
