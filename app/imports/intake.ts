import { createHash, randomUUID } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { rm } from 'node:fs/promises'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import type { FastifyRequest } from 'fastify'
import { ProblemError } from '../../plugins/problem-details.ts'
import { importFormats } from '../../schemas/imports.ts'
import { resourceNames } from '../../schemas/jobs.ts'
import type { InvalidParam } from '../../schemas/problem.ts'
import { DigestStream } from '../jobs/digest-stream.ts'
import type { ImportFormat } from './record-splitter.ts'

// What an import request brings: an upload streamed to IMPORT_DIR (hashed and counted on the
// way, never held in memory) with its form fields, or a URL.

export interface ReceivedUpload {
  path: string
  filename: string | null
  contentType: string | null
  sizeBytes: number
  sha256: string
  fields: Record<string, string>
}

/**
 * Streams the multipart body's `file` part to IMPORT_DIR and collects the other fields.
 * @throws ProblemError (400) when there is no file part or an unexpected one; the multipart
 *   plugin's 413 errors pass through. The partial file is removed on any failure.
 */
export async function receiveUpload(request: FastifyRequest, importDir: string): Promise<ReceivedUpload> {
  const fields: Record<string, string> = {}
  let upload: Omit<ReceivedUpload, 'fields'> | undefined
  const target = path.join(importDir, `${randomUUID()}.upload`)
  try {
    for await (const part of request.parts()) {
      if (part.type === 'field') {
        if (typeof part.value === 'string') fields[part.fieldname] = part.value
        continue
      }
      if (part.fieldname !== 'file' || upload) {
        part.file.resume()
        throw new ProblemError(
          'bad_request',
          `Unexpected file part "${part.fieldname}": send exactly one file, as the part named "file".`,
        )
      }
      const digest = new DigestStream()
      await pipeline(part.file, digest, createWriteStream(target))
      if (part.file.truncated) {
        throw new ProblemError('payload_too_large', 'The file is larger than UPLOAD_MAX_BYTES.')
      }
      upload = {
        path: target,
        filename: part.filename || null,
        contentType: part.mimetype || null,
        sizeBytes: digest.bytes,
        sha256: digest.sha256(),
      }
    }
  } catch (error) {
    await rm(target, { force: true })
    // The body's own defects (truncated, no boundary, malformed part) come from the multipart
    // parser with neither a status nor a system call: they are the client's, a 400. Errors of
    // the file system (a full disk) stay 5xx.
    const { statusCode, syscall } = error as { statusCode?: number; syscall?: string }
    if (error instanceof ProblemError || statusCode !== undefined || syscall !== undefined) throw error
    throw new ProblemError(
      'bad_request',
      `The multipart body cannot be read (${(error as Error).message}); send it whole, with its boundary.`,
    )
  }
  if (!upload) {
    throw new ProblemError('validation_failed', 'The multipart body has no "file" part.', {
      errors: [{ in: 'body', name: 'file', pointer: '/file', reason: 'is required' }],
    })
  }
  return { ...upload, fields }
}

export interface ImportOptions {
  resource: string
  format: ImportFormat | undefined
  dryRun: boolean
}

/** The form fields of an upload, checked as the JSON body's schema would check them. */
export function uploadOptions(fields: Record<string, string>): ImportOptions {
  const errors: InvalidParam[] = []
  const problem = (name: string, reason: string) => errors.push({ in: 'body', name, pointer: `/${name}`, reason })
  const resource = fields.resource?.trim()
  if (!resource) problem('resource', 'is required')
  else if (!(resourceNames as readonly string[]).includes(resource)) {
    problem('resource', `must be one of ${resourceNames.join(', ')}`)
  }
  const format = fields.format?.trim() || undefined
  if (format && !(importFormats as readonly string[]).includes(format)) {
    problem('format', `must be one of ${importFormats.join(', ')}`)
  }
  const dryRun = fields.dry_run?.trim().toLowerCase() ?? 'false'
  if (!['true', 'false', '1', '0', ''].includes(dryRun)) problem('dry_run', 'must be true or false')
  for (const name of Object.keys(fields)) {
    if (!['resource', 'format', 'dry_run'].includes(name)) problem(name, 'is not a known field')
  }
  if (errors.length) {
    const detail = errors.map((error) => `body.${error.name} ${error.reason}`).join('; ')
    throw new ProblemError('validation_failed', `${detail}.`, { errors })
  }
  return {
    resource: resource as string,
    format: format as ImportFormat | undefined,
    dryRun: dryRun === 'true' || dryRun === '1',
  }
}

/** What makes two requests with one Idempotency-Key the same request (SPEC §4). */
export function importFingerprint(options: ImportOptions, source: { sha256: string } | { url: string }): string {
  const canonical = JSON.stringify({
    resource: options.resource,
    format: options.format ?? null,
    dry_run: options.dryRun,
    source: 'sha256' in source ? { sha256: source.sha256 } : { url: source.url },
  })
  return createHash('sha256').update(canonical).digest('hex')
}
