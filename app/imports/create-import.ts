import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { Sql } from '../../db/connection.ts'
import { findImportJob, type ImportJobRow, insertImportJob } from '../../db/imports.ts'
import { findUpload } from '../../db/uploads.ts'
import { ProblemError } from '../../plugins/problem-details.ts'
import { type ResourceDescriptor, resourceNames, resourceOf } from '../../resources/index.ts'
import type { Config } from '../../schemas/config.ts'
import { idempotent } from '../jobs/idempotency.ts'
import { parseS3Url, type Stores } from '../storage/stores.ts'
import { checkImportUrl } from './download.ts'
import { type ImportOptions, importFingerprint, type ReceivedUpload, receiveUpload, uploadOptions } from './intake.ts'
import { inspectSource, SourceRejected } from './source.ts'
import { type UnknownFieldList, UnknownFields } from './unknown-fields.ts'

export interface ImportCreation {
  sql: Sql
  config: Config
  /** Where uploads go (the imports' store), and the buckets a s3:// URL may name. */
  stores: Stores
  /** The app's resources (an upload's `resource` must name one). */
  resources: readonly ResourceDescriptor[]
  log: FastifyBaseLogger
}

/**
 * What a POST /api/v1/imports asks for: a file it uploads (multipart), a URL for the job to
 * download (or a s3:// object to read where it is), or a completed direct upload.
 */
export type ImportRequest =
  | { kind: 'upload'; request: FastifyRequest }
  | { kind: 'url'; resource: string; url: string; format?: ImportOptions['format']; dryRun?: boolean }
  | { kind: 'stored'; resource: string; uploadId: string; format?: ImportOptions['format']; dryRun?: boolean }

/**
 * Creates an import job (docs/contract.md §6): streams an upload to the store (its SHA-256 and
 * size on the way) or checks a URL, settles the Idempotency-Key once the request's fingerprint is
 * known (a retry answers with the job created before), inspects an upload (format, header,
 * unknown columns: a source that cannot be imported is refused here, 422), and queues the job,
 * which completes the key in the same transaction. An upload whose job was not created is deleted.
 */
export async function createImport(
  creation: ImportCreation,
  asked: ImportRequest,
  idempotencyKey: string | undefined,
): Promise<{ job: ImportJobRow; replayed: boolean }> {
  const { config } = creation
  const keyOptions = {
    scope: 'imports',
    key: idempotencyKey,
    mismatch: 'This Idempotency-Key was used for another request (other resource, options or file); use a new key.',
    config,
  }
  return idempotent(creation.sql, keyOptions, async (key) => {
    const store = creation.stores.imports
    let upload: ReceivedUpload | undefined
    let stored: { key: string; filename: string | null; contentType: string | null; sizeBytes: number } | undefined
    let created = false
    try {
      let options: ImportOptions
      const url = asked.kind === 'url' ? asked.url : null
      if (asked.kind === 'upload') {
        upload = await receiveUpload(asked.request, store)
        options = uploadOptions(upload.fields, resourceNames(creation.resources))
      } else {
        options = { resource: asked.resource, format: asked.format, dryRun: asked.dryRun ?? false }
      }
      if (asked.kind === 'stored') stored = await directUpload(creation, asked.uploadId)
      const replay = await key.settle(
        importFingerprint(
          options,
          upload
            ? { sha256: upload.sha256 }
            : asked.kind === 'stored'
              ? { upload: asked.uploadId }
              : { url: url ?? '' },
        ),
      )
      if (replay) {
        const job = await findImportJob(creation.sql, replay)
        if (!job) throw new ProblemError('not_found', `There is no import job ${replay}.`)
        return { job, replayed: true }
      }

      let format = options.format ?? null
      let warnings: string[] = []
      let unknownFields: UnknownFieldList = { names: [], more: false }
      const file = upload ?? stored
      if (file) {
        const inspection = await inspectSource(
          { store, key: file.key },
          resourceOf(creation.resources, options.resource),
          {
            declared: options.format,
            filename: file.filename,
            contentType: file.contentType,
          },
        )
        format = inspection.format
        warnings = inspection.warnings
        unknownFields = UnknownFields.listOf(inspection.unknownFields)
      } else if (url?.startsWith('s3:')) {
        await checkS3Url(creation.stores, url)
      } else {
        await checkImportUrl(url ?? '', config.IMPORT_URL_ALLOW_PRIVATE)
      }
      const job = await insertImportJob(
        creation.sql,
        {
          resource: options.resource,
          format,
          dry_run: options.dryRun,
          source_type: file ? 'upload' : 'url',
          source_filename: file?.filename ?? null,
          source_url: url,
          source_path: file ? store.reference(file.key) : null,
          source_size_bytes: file?.sizeBytes ?? null,
          source_sha256: upload?.sha256 ?? null,
          bytes_total: file?.sizeBytes ?? null,
          batch_size: config.BATCH_SIZE,
          warnings,
          unknown_fields: unknownFields.names,
          unknown_fields_more: unknownFields.more,
          idempotency_key: idempotencyKey ?? null,
        },
        key.completion(),
      )
      created = true
      creation.log.info({ job_id: job.id, resource: job.resource, source: job.source_type }, 'import job created')
      return { job, replayed: false }
    } finally {
      // The service's own copy of a refused upload goes; a direct upload stays the client's.
      if (upload && !created) await store.delete(upload.key).catch(() => {})
    }
  })
}

/** A direct upload an import may name: completed (app/imports/direct-upload.ts). */
async function directUpload(creation: ImportCreation, id: string) {
  const row = await findUpload(creation.sql, id)
  if (!row) throw new SourceRejected(`there is no upload ${id}`)
  if (row.status !== 'completed') {
    throw new SourceRejected(
      `the upload ${id} is ${row.status}: complete it (POST /api/v1/uploads/${id}/complete) first`,
    )
  }
  return {
    key: row.object_key,
    filename: row.filename,
    contentType: row.content_type,
    sizeBytes: Number(row.size_bytes),
  }
}

/** A s3:// source: of a bucket of S3_IMPORT_BUCKETS, and there. */
async function checkS3Url(stores: Stores, url: string): Promise<void> {
  const object = parseS3Url(url)
  if (!object) throw new SourceRejected('an s3 url must be s3://bucket/key')
  if (!stores.settings.importBuckets.includes(object.bucket)) {
    throw new SourceRejected(
      `the bucket ${object.bucket} is not one of S3_IMPORT_BUCKETS, the buckets imports may read`,
    )
  }
  if (!(await stores.bucket(object.bucket).stat(object.key))) throw new SourceRejected(`there is no object ${url}`)
}
