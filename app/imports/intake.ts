import { createHash, randomUUID } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { FORM_LIMITS } from '../../plugins/multipart.ts'
import { ProblemError } from '../../plugins/problem-details.ts'
import { importFormats } from '../../schemas/imports.ts'
import type { InvalidParam } from '../../schemas/problem.ts'
import { type ObjectStore, StoreError } from '../storage/object-store.ts'
import type { ImportFormat } from './record-splitter.ts'

// What an import request brings: an upload streamed to the imports' store (hashed and counted on
// the way, never held in memory) with its form fields, or a URL.

export interface ReceivedUpload {
  /** Its key in the imports' store. */
  key: string
  filename: string | null
  contentType: string | null
  sizeBytes: number
  sha256: string
  fields: Record<string, string>
}

/** What a form that breaks FORM_LIMITS should have been. */
const FORM_RULE = 'send resource, format and dry_run, and one file part named "file"'

/**
 * The multipart parser's refusals of a form's shape, by its error code. The plugin answers them
 * 413 (or 406 for a JSON field that does not parse), but only a file over UPLOAD_MAX_BYTES is
 * too large: a form with too many parts is a malformed request, a 400 that says what to send.
 */
const formShapeErrors: Record<string, () => ProblemError> = {
  FST_FILES_LIMIT: () =>
    new ProblemError(
      'bad_request',
      'The form has more than one file part: send exactly one file, as the part named "file".',
    ),
  FST_FIELDS_LIMIT: () =>
    new ProblemError('bad_request', `The form has more than ${FORM_LIMITS.fields} fields: ${FORM_RULE}.`),
  FST_PARTS_LIMIT: () =>
    new ProblemError('bad_request', `The form has more than ${FORM_LIMITS.parts} parts: ${FORM_RULE}.`),
  FST_INVALID_JSON_FIELD_ERROR: () =>
    new ProblemError(
      'bad_request',
      'A form field declared as application/json is not valid JSON; send the fields as plain text.',
    ),
  FST_PROTO_VIOLATION: () =>
    new ProblemError(
      'bad_request',
      `A form part is named after a built-in object property (such as __proto__ or constructor); ${FORM_RULE}.`,
    ),
  FST_REQ_FILE_TOO_LARGE: () => new ProblemError('payload_too_large', 'The file is larger than UPLOAD_MAX_BYTES.'),
}

function fieldProblem(name: string, reason: string): ProblemError {
  return new ProblemError('validation_failed', `body.${name} ${reason}.`, {
    errors: [{ in: 'body', name, pointer: `/${name}`, reason }],
  })
}

/**
 * A form field's text. A part sent as application/json arrives parsed: a JSON string, boolean or
 * number stands for its text (`true` for dry_run), so it is neither dropped nor misread.
 */
function fieldText(name: string, value: unknown, valueTruncated: boolean): string {
  // busboy cuts a value at fieldSize without an error: refused, since a cut value can still
  // read as a valid one (trailing blanks trimmed away).
  if (valueTruncated) throw fieldProblem(name, `must NOT be longer than ${FORM_LIMITS.fieldSize} bytes`)
  if (typeof value === 'string') return value
  if (typeof value === 'boolean' || typeof value === 'number') return String(value)
  throw fieldProblem(name, 'must be text')
}

/**
 * Streams the multipart body's `file` part to the imports' store and collects the other fields.
 * @throws ProblemError: 400 when the form's shape is wrong (no file part, another file part,
 *   too many parts, a field given twice or longer than FORM_LIMITS.fieldSize); 413 when the file
 *   is larger than UPLOAD_MAX_BYTES. The partial file is removed on any failure.
 */
export async function receiveUpload(request: FastifyRequest, store: ObjectStore): Promise<ReceivedUpload> {
  const fields = new Map<string, string>()
  let upload: Omit<ReceivedUpload, 'fields'> | undefined
  const key = `${randomUUID()}.upload`
  try {
    for await (const part of request.parts()) {
      if (part.type === 'field') {
        if (fields.has(part.fieldname)) throw fieldProblem(part.fieldname, 'is given more than once')
        fields.set(part.fieldname, fieldText(part.fieldname, part.value, part.valueTruncated))
        continue
      }
      if (part.fieldname !== 'file' || upload) {
        part.file.resume()
        throw new ProblemError(
          'bad_request',
          `Unexpected file part "${part.fieldname}": send exactly one file, as the part named "file".`,
        )
      }
      const written = await store.write(key, part.file, { contentType: part.mimetype || undefined })
      if (part.file.truncated) {
        throw new ProblemError('payload_too_large', 'The file is larger than UPLOAD_MAX_BYTES.')
      }
      upload = {
        key,
        filename: part.filename || null,
        contentType: part.mimetype || null,
        sizeBytes: written.size,
        sha256: written.sha256,
      }
    }
  } catch (error) {
    await store.delete(key).catch(() => {}) // a failed write left nothing; a refused one is removed
    if (error instanceof ProblemError || error instanceof StoreError) throw error
    const { code, statusCode, syscall } = error as { code?: string; statusCode?: number; syscall?: string }
    const shapeError = code === undefined ? undefined : formShapeErrors[code]
    if (shapeError) throw shapeError()
    // The body's own defects (truncated, no boundary, malformed part) come from the multipart
    // parser with neither a status nor a system call: they are the client's, a 400. Errors of
    // the file system (a full disk) stay 5xx.
    if (statusCode !== undefined || syscall !== undefined) throw error
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
  return { ...upload, fields: Object.fromEntries(fields) }
}

export interface ImportOptions {
  resource: string
  format: ImportFormat | undefined
  dryRun: boolean
}

/** The form fields of an upload, checked as the JSON body's schema would check them; `resourceNames`: the app's. */
export function uploadOptions(fields: Record<string, string>, resourceNames: readonly string[]): ImportOptions {
  const errors: InvalidParam[] = []
  const problem = (name: string, reason: string) => errors.push({ in: 'body', name, pointer: `/${name}`, reason })
  const resource = fields.resource?.trim()
  if (!resource) problem('resource', 'is required')
  else if (!resourceNames.includes(resource)) {
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

/** What makes two requests with one Idempotency-Key the same request (docs/contract.md §9). */
export function importFingerprint(
  options: ImportOptions,
  source: { sha256: string } | { url: string } | { upload: string },
): string {
  const canonical = JSON.stringify({
    resource: options.resource,
    format: options.format ?? null,
    dry_run: options.dryRun,
    source,
  })
  return createHash('sha256').update(canonical).digest('hex')
}
