import type { ExportFormat, ExportQuery } from '../../db/exports.ts'
import type { ResourceDescriptor } from '../../resources/index.ts'

// What both export modes (streams and async jobs) make of a request: the query, the media type,
// the file name.

export const exportMediaTypes: Record<ExportFormat, string> = {
  csv: 'text/csv; charset=utf-8',
  ndjson: 'application/x-ndjson; charset=utf-8',
  json: 'application/json; charset=utf-8',
}

/** The export query of a request: every column when no fields are named. */
export function exportQuery(
  resource: ResourceDescriptor,
  request: {
    format: ExportFormat
    fields?: readonly string[] | null
    filters?: Readonly<Record<string, string | boolean | undefined>>
  },
  escapeFormulas: boolean,
): ExportQuery {
  const table = resource.exportTable
  const filters: Record<string, string | boolean> = {}
  for (const [name, value] of Object.entries(request.filters ?? {})) {
    if (value !== undefined) filters[name] = value
  }
  return {
    table,
    format: request.format,
    fields: request.fields?.length ? request.fields : Object.keys(table.columns),
    filters,
    escapeFormulas: escapeFormulas && request.format === 'csv',
  }
}

/** A download's file name: `users-2026-11-26T14-05-09Z.csv`. */
export function exportFileName(resource: string, format: ExportFormat, at: Date, gzip = false): string {
  const stamp = at.toISOString().slice(0, 19).replaceAll(':', '-')
  return `${resource}-${stamp}Z.${format}${gzip ? '.gz' : ''}`
}
