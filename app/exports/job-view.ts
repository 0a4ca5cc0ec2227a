import type { ExportJobRow } from '../../db/exports.ts'
import { findResource, type ResourceDescriptor } from '../../resources/index.ts'
import type { ExportJob } from '../../schemas/exports.ts'

/** Whether a job's file is gone, or due to go: it cannot be downloaded any more. */
export function exportExpired(row: ExportJobRow, now = new Date()): boolean {
  return row.file_deleted_at !== null || (row.expires_at !== null && row.expires_at.getTime() <= now.getTime())
}

/** The API's view of an export job (docs/contract.md §8 field names); `resources`: the app's. */
export function exportJobView(
  row: ExportJobRow,
  resources: readonly ResourceDescriptor[],
  now = new Date(),
): ExportJob {
  const expired = exportExpired(row, now)
  return {
    id: row.id,
    resource: row.resource,
    format: row.format,
    status: row.status,
    done: row.status === 'completed' || row.status === 'failed' || row.status === 'cancelled',
    created_at: row.created_at.toISOString(),
    started_at: row.started_at?.toISOString() ?? null,
    finished_at: row.finished_at?.toISOString() ?? null,
    counters: { rows: Number(row.rows), bytes: Number(row.bytes) },
    fields: row.fields ?? [...(findResource(resources, row.resource)?.columns ?? [])],
    filters: row.filters,
    compression: row.compression,
    download_url: row.status === 'completed' && !expired ? `/api/v1/exports/${row.id}/download` : null,
    sha256: row.sha256,
    expires_at: row.expires_at?.toISOString() ?? null,
    expired,
    error: row.error,
  }
}
