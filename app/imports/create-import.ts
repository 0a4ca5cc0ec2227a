import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { Sql } from '../../db/connection.ts'
import { findImportJob, type ImportJobRow, insertImportJob } from '../../db/imports.ts'
import { ProblemError } from '../../plugins/problem-details.ts'
import { type ResourceDescriptor, resourceNames, resourceOf } from '../../resources/index.ts'
import type { Config } from '../../schemas/config.ts'
import { idempotent } from '../jobs/idempotency.ts'
import type { ObjectStore } from '../storage/object-store.ts'
import { checkImportUrl } from './download.ts'
import { type ImportOptions, importFingerprint, type ReceivedUpload, receiveUpload, uploadOptions } from './intake.ts'
import { inspectSource } from './source.ts'
import { type UnknownFieldList, UnknownFields } from './unknown-fields.ts'

export interface ImportCreation {
  sql: Sql
  config: Config
  /** Where uploads go: the imports' store. */
  store: ObjectStore
  /** The app's resources (an upload's `resource` must name one). */
  resources: readonly ResourceDescriptor[]
  log: FastifyBaseLogger
}

/** What a POST /api/v1/imports asks for: a file it uploads (multipart), or a URL for the job to download. */
export type ImportRequest =
  | { kind: 'upload'; request: FastifyRequest }
  | { kind: 'url'; resource: string; url: string; format?: ImportOptions['format']; dryRun?: boolean }

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
    let upload: ReceivedUpload | undefined
    let created = false
    try {
      let options: ImportOptions
      const url = asked.kind === 'url' ? asked.url : null
      if (asked.kind === 'upload') {
        upload = await receiveUpload(asked.request, creation.store)
        options = uploadOptions(upload.fields, resourceNames(creation.resources))
      } else {
        options = { resource: asked.resource, format: asked.format, dryRun: asked.dryRun ?? false }
      }
      const replay = await key.settle(
        importFingerprint(options, upload ? { sha256: upload.sha256 } : { url: url ?? '' }),
      )
      if (replay) {
        const job = await findImportJob(creation.sql, replay)
        if (!job) throw new ProblemError('not_found', `There is no import job ${replay}.`)
        return { job, replayed: true }
      }

      let format = options.format ?? null
      let warnings: string[] = []
      let unknownFields: UnknownFieldList = { names: [], more: false }
      if (upload) {
        const inspection = await inspectSource(
          { store: creation.store, key: upload.key },
          resourceOf(creation.resources, options.resource),
          {
            declared: options.format,
            filename: upload.filename,
            contentType: upload.contentType,
          },
        )
        format = inspection.format
        warnings = inspection.warnings
        unknownFields = UnknownFields.listOf(inspection.unknownFields)
      } else {
        await checkImportUrl(url ?? '', config.IMPORT_URL_ALLOW_PRIVATE)
      }
      const job = await insertImportJob(
        creation.sql,
        {
          resource: options.resource,
          format,
          dry_run: options.dryRun,
          source_type: upload ? 'upload' : 'url',
          source_filename: upload?.filename ?? null,
          source_url: url,
          source_path: upload?.key ?? null,
          source_size_bytes: upload?.sizeBytes ?? null,
          source_sha256: upload?.sha256 ?? null,
          bytes_total: upload?.sizeBytes ?? null,
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
      if (upload && !created) await creation.store.delete(upload.key).catch(() => {})
    }
  })
}
