import { randomUUID } from 'node:crypto'
import type { Sql } from '../../db/connection.ts'
import { findUpload, insertUpload, settleUpload, type UploadRow } from '../../db/uploads.ts'
import { ProblemError } from '../../plugins/problem-details.ts'
import type { CompleteUpload, CreateUpload, Upload } from '../../schemas/uploads.ts'
import { StoreError } from '../storage/object-store.ts'
import { S3Store } from '../storage/s3-store.ts'
import type { Stores } from '../storage/stores.ts'

// Direct uploads: the client puts its file straight into the imports' bucket with presigned
// URLs (one PUT, or one per part of a multipart upload), completes the upload, and starts an
// import with its id. The file never passes through the service, so its size is the store's
// limit (5 TiB), not the HTTP request's timeout. STORAGE=s3 only.

/** S3's most parts in one multipart upload. */
const MAX_PARTS = 10_000
const MiB = 1024 * 1024

export interface DirectUploads {
  sql: Sql
  stores: Stores
  partBytes: number
  ttlSeconds: number
}

function bucketStore(uploads: DirectUploads): S3Store {
  const store = uploads.stores.imports
  if (!(store instanceof S3Store)) {
    throw new ProblemError(
      'conflict',
      'Direct uploads need object storage (STORAGE=s3); upload the file with POST /api/v1/imports (multipart/form-data) instead.',
    )
  }
  return store
}

/** The part size of a file: S3_PART_BYTES, or larger (whole MiB) when the file needs more than 10,000 parts. */
export function partSize(sizeBytes: number, partBytes: number): number {
  return Math.max(partBytes, Math.ceil(sizeBytes / MAX_PARTS / MiB) * MiB)
}

async function view(uploads: DirectUploads, row: UploadRow): Promise<Upload> {
  const store = bucketStore(uploads)
  const pending = row.status === 'pending'
  const expiresIn = Math.max(1, Math.floor((row.expires_at.getTime() - Date.now()) / 1000))
  let url: string | null = null
  let parts: Upload['parts'] = []
  if (pending && row.expires_at.getTime() > Date.now()) {
    if (row.multipart_upload_id) {
      const uploadId = row.multipart_upload_id
      parts = await Promise.all(
        Array.from({ length: row.parts }, async (_, index) => ({
          part_number: index + 1,
          url: await store.presignPart(row.object_key, uploadId, index + 1, expiresIn),
        })),
      )
    } else {
      url = await store.presignPut(row.object_key, expiresIn)
    }
  }
  return {
    id: row.id,
    status: row.status,
    size_bytes: Number(row.size_bytes),
    filename: row.filename,
    content_type: row.content_type,
    method: 'PUT',
    url,
    part_size_bytes: row.part_bytes === null ? null : Number(row.part_bytes),
    parts,
    complete_url: `/api/v1/uploads/${row.id}/complete`,
    expires_at: row.expires_at.toISOString(),
    created_at: row.created_at.toISOString(),
    completed_at: row.completed_at?.toISOString() ?? null,
  }
}

/** Starts a direct upload: presigned URLs for one PUT (up to S3_PART_BYTES) or for each part. */
export async function createUpload(uploads: DirectUploads, asked: CreateUpload): Promise<Upload> {
  const store = bucketStore(uploads)
  const id = randomUUID()
  const key = `${id}.direct`
  const multipart = asked.size_bytes > uploads.partBytes
  const part = multipart ? partSize(asked.size_bytes, uploads.partBytes) : null
  const multipartUploadId = multipart ? await store.createMultipart(key) : null
  const row = await insertUpload(uploads.sql, {
    id,
    object_key: key,
    multipart_upload_id: multipartUploadId,
    partBytes: part,
    parts: part ? Math.ceil(asked.size_bytes / part) : 1,
    filename: asked.filename ?? null,
    content_type: asked.content_type ?? null,
    sizeBytes: asked.size_bytes,
    ttlSeconds: uploads.ttlSeconds,
  })
  return view(uploads, row)
}

export async function uploadOr404(uploads: DirectUploads, id: string): Promise<UploadRow> {
  const row = await findUpload(uploads.sql, id)
  if (!row) throw new ProblemError('not_found', `There is no upload ${id}.`)
  return row
}

export async function getUpload(uploads: DirectUploads, id: string): Promise<Upload> {
  return view(uploads, await uploadOr404(uploads, id))
}

/**
 * Completes a direct upload: the multipart upload is assembled from the parts the client names
 * (or the single PUT is found), and the upload records the size the store holds.
 */
export async function completeUpload(uploads: DirectUploads, id: string, asked: CompleteUpload): Promise<Upload> {
  const store = bucketStore(uploads)
  const row = await uploadOr404(uploads, id)
  if (row.status === 'completed') return view(uploads, row)
  if (row.status === 'aborted') throw new ProblemError('conflict', `The upload ${id} was aborted; start a new one.`)
  if (row.multipart_upload_id) {
    const parts = asked.parts ?? []
    if (parts.length !== row.parts || parts.some((part, index) => part.part_number !== index + 1)) {
      throw new ProblemError(
        'validation_failed',
        `body.parts must list the ${row.parts} parts in order, each with the ETag its PUT answered.`,
        { errors: [{ in: 'body', name: 'parts', pointer: '/parts', reason: `must list parts 1 to ${row.parts}` }] },
      )
    }
    try {
      await store.completeMultipart(
        row.object_key,
        row.multipart_upload_id,
        parts.map((part) => ({ PartNumber: part.part_number, ETag: part.etag })),
      )
    } catch (error) {
      // Completed meanwhile by another request: the same answer as it got.
      if (error instanceof StoreError && error.kind === 'not_found') {
        const again = await uploadOr404(uploads, id)
        if (again.status === 'completed') return view(uploads, again)
        throw new ProblemError('conflict', `The store no longer has the upload ${id} (aborted); start a new one.`)
      }
      // The store refuses to assemble what it does not hold (a missing part, a wrong ETag).
      const status = (error as { cause?: { $metadata?: { httpStatusCode?: number } } }).cause?.$metadata?.httpStatusCode
      if (status === 400) {
        throw new ProblemError(
          'conflict',
          `The store cannot assemble the upload: ${(error as Error).message}. PUT every part, then complete with their ETags.`,
        )
      }
      throw error
    }
  }
  const stored = await store.stat(row.object_key)
  if (!stored) {
    throw new ProblemError('conflict', `Nothing was uploaded for ${id} yet: PUT the file to its url, then complete.`)
  }
  const settled = await settleUpload(uploads.sql, id, 'completed', stored.size)
  return view(uploads, settled ?? (await uploadOr404(uploads, id)))
}

/** Aborts a pending direct upload: its parts are deleted. */
export async function abortUpload(uploads: DirectUploads, id: string): Promise<void> {
  const store = bucketStore(uploads)
  const row = await uploadOr404(uploads, id)
  if (row.status !== 'pending') throw new ProblemError('conflict', `The upload ${id} is ${row.status}.`)
  if (row.multipart_upload_id) await store.abortMultipart(row.object_key, row.multipart_upload_id).catch(() => {})
  await store.delete(row.object_key)
  await settleUpload(uploads.sql, id, 'aborted')
}
