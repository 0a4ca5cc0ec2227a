import { type Static, Type } from '@sinclair/typebox'
import { stringEnum } from './common.ts'

// Direct uploads (docs/api.md, "Direct uploads"): a client puts a large file straight into the
// object store with presigned URLs, then starts an import with the upload's id.

export const CreateUploadSchema = Type.Object(
  {
    size_bytes: Type.Integer({
      minimum: 1,
      maximum: 5 * 1024 ** 4,
      description: 'The file’s size in bytes (up to 5 TiB, S3’s largest object).',
    }),
    filename: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 1024,
        description: 'The file’s name: its extension may give the format.',
      }),
    ),
    content_type: Type.Optional(
      Type.String({ minLength: 1, maxLength: 255, description: 'The file’s media type: it may give the format.' }),
    ),
  },
  { $id: 'CreateUpload', additionalProperties: false },
)
export type CreateUpload = Static<typeof CreateUploadSchema>

const UploadPartSchema = Type.Object(
  {
    part_number: Type.Integer({ minimum: 1, maximum: 10_000 }),
    url: Type.String({ description: 'PUT the part’s bytes here; keep the ETag header of the answer.' }),
  },
  { additionalProperties: false },
)

export const UploadSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    status: stringEnum(['pending', 'completed', 'aborted'], {
      description: '`pending` until completed; then an import may name it (`upload_id`).',
    }),
    size_bytes: Type.Integer({ description: 'Declared when pending; what the store holds once completed.' }),
    filename: Type.Union([Type.String(), Type.Null()]),
    content_type: Type.Union([Type.String(), Type.Null()]),
    method: stringEnum(['PUT']),
    url: Type.Union([Type.String(), Type.Null()], {
      description: 'One PUT of the whole file (files up to S3_PART_BYTES); null for a multipart upload.',
    }),
    part_size_bytes: Type.Union([Type.Integer(), Type.Null()], {
      description: 'A multipart upload: every part but the last has this size.',
    }),
    parts: Type.Array(UploadPartSchema, {
      description: 'A multipart upload: one presigned PUT per part (empty for a single PUT, and once completed).',
    }),
    complete_url: Type.String({ description: 'POST here once every byte is up.' }),
    expires_at: Type.String({ format: 'date-time', description: 'When the presigned URLs stop working.' }),
    created_at: Type.String({ format: 'date-time' }),
    completed_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  },
  { $id: 'Upload', additionalProperties: false },
)
export type Upload = Static<typeof UploadSchema>

export const CompleteUploadSchema = Type.Object(
  {
    parts: Type.Optional(
      Type.Array(
        Type.Object(
          {
            part_number: Type.Integer({ minimum: 1, maximum: 10_000 }),
            etag: Type.String({
              minLength: 1,
              maxLength: 200,
              description: 'The ETag header the part’s PUT answered.',
            }),
          },
          { additionalProperties: false },
        ),
        { maxItems: 10_000, description: 'A multipart upload: every part, in order. Omit for a single PUT.' },
      ),
    ),
  },
  { $id: 'CompleteUpload', additionalProperties: false },
)
export type CompleteUpload = Static<typeof CompleteUploadSchema>
