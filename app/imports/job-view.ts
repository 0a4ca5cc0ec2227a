import type { ImportErrorRow, ImportJobWithBlocker } from '../../db/imports.ts'
import type { ImportJob } from '../../schemas/imports.ts'
import { unknownFieldsWarning } from './unknown-fields.ts'

/** The API's view of an import job (docs/contract.md §6 field names), with its first errors. */
export function importJobView(row: ImportJobWithBlocker, errors: ImportErrorRow[], now = new Date()): ImportJob {
  const processed = Number(row.processed)
  const bytesRead = Number(row.bytes_read)
  const bytesTotal = row.bytes_total === null ? null : Number(row.bytes_total)
  const done = row.status === 'completed' || row.status === 'failed' || row.status === 'cancelled'
  const started = row.started_at?.getTime()
  const elapsedSeconds = started ? ((row.finished_at ?? now).getTime() - started) / 1000 : 0
  const byteRate = elapsedSeconds > 0 ? bytesRead / elapsedSeconds : 0
  let percent: number | null = null
  if (row.status === 'completed') percent = 100
  else if (bytesTotal) percent = Math.min(100, Math.round((bytesRead / bytesTotal) * 10000) / 100)
  return {
    id: row.id,
    resource: row.resource as ImportJob['resource'],
    format: row.format,
    status: row.status,
    done,
    dry_run: row.dry_run,
    source: {
      type: row.source_type,
      filename: row.source_filename,
      url: row.source_url,
      size_bytes: row.source_size_bytes === null ? null : Number(row.source_size_bytes),
      sha256: row.source_sha256,
    },
    created_at: row.created_at.toISOString(),
    started_at: row.started_at?.toISOString() ?? null,
    finished_at: row.finished_at?.toISOString() ?? null,
    counters: {
      processed,
      inserted: Number(row.inserted),
      updated: Number(row.updated),
      failed: Number(row.failed),
    },
    progress: {
      bytes_read: bytesRead,
      bytes_total: bytesTotal,
      percent,
      rows_per_second: elapsedSeconds > 0 ? Math.round(processed / elapsedSeconds) : null,
      eta_seconds:
        row.status === 'running' && bytesTotal && byteRate > 0
          ? Math.round(Math.max(0, bytesTotal - bytesRead) / byteRate)
          : null,
      waiting: waitingView(row),
    },
    warnings: [unknownFieldsWarning(row.unknown_fields, row.unknown_fields_more) ?? [], row.warnings].flat(),
    errors: errors.map(recordErrorView),
    errors_url: `/api/v1/imports/${row.id}/errors`,
    failed_records_url: `/api/v1/imports/${row.id}/failed-records`,
    error: row.error,
  }
}

/** Why the job does not advance: a lock wait it recorded, or the running import it queues behind. */
function waitingView(row: ImportJobWithBlocker): ImportJob['progress']['waiting'] {
  if (row.status === 'running' && row.waiting) return { ...row.waiting }
  if (row.status === 'queued' && row.blocked_by) {
    return {
      reason: 'resource_busy',
      detail: `Waiting for import ${row.blocked_by} of ${row.resource} to finish: imports of one resource write one at a time.`,
      since: null,
      blocked_by: row.blocked_by,
    }
  }
  return null
}

/** One per-record error as the API shows it: optional fields left out when empty. */
export function recordErrorView(row: ImportErrorRow): ImportJob['errors'][number] {
  // Built in docs/contract.md §7's order: {line, record, id?, field?, code, message, value?}.
  const view: Partial<ImportJob['errors'][number]> = { line: Number(row.line), record: Number(row.record) }
  if (row.record_id) view.id = row.record_id
  if (row.field) view.field = row.field
  view.code = row.code as ImportJob['errors'][number]['code']
  view.message = row.message
  if (row.value !== null) view.value = row.value
  return view as ImportJob['errors'][number]
}
