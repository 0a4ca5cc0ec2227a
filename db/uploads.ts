import type { Sql } from './connection.ts'

// Direct uploads (db/migrations/0007_object_storage.ts): an object a client puts into the
// imports' store with presigned URLs.

export interface UploadRow {
  id: string
  object_key: string
  multipart_upload_id: string | null
  part_bytes: string | null
  parts: number
  filename: string | null
  content_type: string | null
  size_bytes: string
  status: 'pending' | 'completed' | 'aborted'
  created_at: Date
  expires_at: Date
  completed_at: Date | null
}

export async function insertUpload(
  sql: Sql,
  upload: Pick<UploadRow, 'id' | 'object_key' | 'multipart_upload_id' | 'filename' | 'content_type' | 'parts'> & {
    partBytes: number | null
    sizeBytes: number
    ttlSeconds: number
  },
): Promise<UploadRow> {
  const [row] = await sql<UploadRow[]>`
    insert into uploads (id, object_key, multipart_upload_id, part_bytes, parts, filename, content_type, size_bytes, expires_at)
    values (${upload.id}, ${upload.object_key}, ${upload.multipart_upload_id}, ${upload.partBytes}, ${upload.parts},
      ${upload.filename}, ${upload.content_type}, ${upload.sizeBytes}, now() + make_interval(secs => ${upload.ttlSeconds}))
    returning *`
  return row as UploadRow
}

export async function findUpload(sql: Sql, id: string): Promise<UploadRow | undefined> {
  const [row] = await sql<UploadRow[]>`select * from uploads where id = ${id}`
  return row
}

/** Marks a pending upload completed (or aborted); undefined when it was not pending any more. */
export async function settleUpload(
  sql: Sql,
  id: string,
  status: 'completed' | 'aborted',
  sizeBytes?: number,
): Promise<UploadRow | undefined> {
  const [row] = await sql<UploadRow[]>`
    update uploads set status = ${status}, completed_at = now(),
      size_bytes = coalesce(${sizeBytes ?? null}::bigint, size_bytes)
    where id = ${id} and status = 'pending'
    returning *`
  return row
}
