import { type Static, Type } from '@sinclair/typebox'
import { ref, stringEnum } from './common.ts'
import { jobListSchema, jobStatuses } from './jobs.ts'

// The import job API (docs/contract.md §6). The field names of ImportJob are fixed: clients and dashboards
// depend on them. The schemas that name resources are built from the list of resources (resources/).

export const importFormats = ['csv', 'ndjson', 'json'] as const
export const errorCodes = [
  'parse_error',
  'required',
  'invalid_format',
  'invalid_value',
  'too_long',
  'type_mismatch',
  'unique_violation',
  'foreign_key_violation',
  'invalid_state',
  'database_error',
] as const

const nullableString = (description: string) => Type.Union([Type.String(), Type.Null()], { description })
const nullableInteger = (description: string) => Type.Union([Type.Integer(), Type.Null()], { description })
const nullableNumber = (description: string) => Type.Union([Type.Number(), Type.Null()], { description })

export const RecordErrorSchema = Type.Object(
  {
    line: Type.Integer({ description: '1-based physical line of the source where the record starts.' }),
    record: Type.Integer({ description: '1-based record number (the CSV header is not a record).' }),
    id: Type.Optional(Type.String({ description: 'The record’s id, when it has one.' })),
    field: Type.Optional(Type.String({ description: 'The failing field; absent for an error of the whole record.' })),
    code: stringEnum(errorCodes),
    message: Type.String(),
    value: Type.Optional(Type.String({ description: 'The offending value as given (at most 200 characters).' })),
  },
  { $id: 'RecordError', additionalProperties: false, description: 'One per-record error (docs/contract.md §7).' },
)

/**
 * The import schemas that name the resources: the job, the two ways to start one (a URL in JSON,
 * an upload's form) and a page of jobs.
 */
export function importSchemas(resourceNames: readonly string[]) {
  const job = Type.Object(
    {
      id: Type.String({ format: 'uuid' }),
      resource: stringEnum(resourceNames),
      format: Type.Union([stringEnum(importFormats), Type.Null()], {
        description: 'Null only for a URL import whose format is learnt from the download.',
      }),
      status: stringEnum(jobStatuses),
      done: Type.Boolean({ description: 'True once the status is completed, failed or cancelled.' }),
      dry_run: Type.Boolean({ description: 'Validated against the live database, nothing written.' }),
      source: Type.Object({
        type: stringEnum(['upload', 'url']),
        filename: Type.Optional(nullableString('The uploaded file’s name.')),
        url: Type.Optional(nullableString('The URL the job fetches.')),
        size_bytes: nullableInteger('Size of the source as stored; null until a URL is downloaded.'),
        sha256: nullableString('SHA-256 of the source as stored; null until a URL is downloaded.'),
      }),
      created_at: Type.String({ format: 'date-time' }),
      started_at: nullableString('When the job first started running.'),
      finished_at: nullableString('When the job finished.'),
      counters: Type.Object(
        {
          processed: Type.Integer(),
          inserted: Type.Integer(),
          updated: Type.Integer(),
          failed: Type.Integer({ description: 'Records that failed (one record may have several errors).' }),
        },
        { description: 'Always processed = inserted + updated + failed. A dry run counts what would happen.' },
      ),
      progress: Type.Object({
        bytes_read: Type.Integer(),
        bytes_total: nullableInteger('Size of the source; null until known.'),
        percent: nullableNumber('bytes_read / bytes_total, 0–100.'),
        rows_per_second: nullableNumber('Records processed per second since the job started.'),
        eta_seconds: nullableNumber('Estimated seconds left, from the byte rate; null when not running.'),
        waiting: Type.Union(
          [
            Type.Object(
              {
                reason: stringEnum(['resource_busy', 'row_locks'], {
                  description:
                    'resource_busy: another import of the resource is writing (imports of one resource write one at a time); row_locks: rows the job writes are locked by another transaction.',
                }),
                detail: Type.String({ description: 'What the job waits for, in words.' }),
                since: nullableString('When the wait began, when known.'),
                blocked_by: Type.Optional(Type.String({ format: 'uuid', description: 'The import job it waits for.' })),
              },
              { additionalProperties: false },
            ),
            Type.Null(),
          ],
          { description: 'Why the job does not advance now; null when it does (or is done).' },
        ),
      }),
      warnings: Type.Array(Type.String(), { description: 'E.g. unknown columns that were ignored.' }),
      errors: Type.Array(ref(RecordErrorSchema), { description: 'The first 20 per-record errors.' }),
      errors_url: Type.String({ description: 'Every error, streamed as NDJSON (or `?format=csv`).' }),
      failed_records_url: Type.String({
        description: 'The rejected records exactly as uploaded, same format (CSV header kept), to fix and re-import.',
      }),
      error: Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()], {
        description: 'Why a failed job failed: a problem details object (RFC 9457).',
      }),
    },
    { $id: 'ImportJob', additionalProperties: false },
  )

  const fromUrl = Type.Object(
    {
      resource: stringEnum(resourceNames),
      url: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 4096,
          description:
            'An http or https URL of the file, or s3://bucket/key for a bucket of S3_IMPORT_BUCKETS (read with the service’s credentials). Give url or upload_id.',
        }),
      ),
      upload_id: Type.Optional(
        Type.String({
          format: 'uuid',
          description: 'A completed direct upload (POST /api/v1/uploads). Give url or upload_id.',
        }),
      ),
      format: Type.Optional(
        stringEnum(importFormats, { description: 'Default: from the URL’s path, the Content-Type, or sniffed.' }),
      ),
      dry_run: Type.Optional(Type.Boolean({ default: false })),
    },
    { $id: 'ImportFromUrl', additionalProperties: false },
  )

  const upload = Type.Object(
    {
      file: Type.String({
        format: 'binary',
        description: 'The file: CSV, NDJSON or a JSON array, optionally gzip-compressed.',
      }),
      resource: stringEnum(resourceNames),
      format: Type.Optional(
        stringEnum(importFormats, { description: 'Default: from the file name, the part’s Content-Type, or sniffed.' }),
      ),
      dry_run: Type.Optional(Type.Boolean({ default: false })),
    },
    {
      $id: 'ImportUpload',
      description:
        'A multipart/form-data body: each field once, no other field, one file part. Put the fields before the file part when you can.',
      // app/imports/intake.ts refuses any other field with a 400, as the JSON body's schema does.
      additionalProperties: false,
    },
  )

  return { job, fromUrl, upload, jobList: jobListSchema(job, 'ImportJobList') }
}

export type ImportJob = Static<ReturnType<typeof importSchemas>['job']>
export type ImportFromUrl = Static<ReturnType<typeof importSchemas>['fromUrl']>

export const ErrorsQuerySchema = Type.Object(
  { format: stringEnum(['ndjson', 'csv'], { default: 'ndjson' }) },
  { additionalProperties: false },
)

export const IdempotencyHeadersSchema = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: '^[\\x21-\\x7e]+$',
      description: 'Makes the request safe to retry: the same key and payload give the same job (docs/contract.md §9).',
    }),
  ),
})
