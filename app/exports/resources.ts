import { articlesExport } from '../../db/articles.ts'
import { commentsExport } from '../../db/comments.ts'
import type { ExportFormat, ExportQuery, ExportTable } from '../../db/exports.ts'
import { usersExport } from '../../db/users.ts'
import type { ExportResourceName } from '../../schemas/exports.ts'

/** What an export reads of each resource (db/<resource>.ts); its API schemas are in schemas/exports.ts. */
export const exportTables: Record<ExportResourceName, ExportTable> = {
  users: usersExport,
  articles: articlesExport,
  comments: commentsExport,
}

export const exportMediaTypes: Record<ExportFormat, string> = {
  csv: 'text/csv; charset=utf-8',
  ndjson: 'application/x-ndjson; charset=utf-8',
  json: 'application/json; charset=utf-8',
}

/** The export query of a request: every column when no fields are named. */
export function exportQuery(
  resource: ExportResourceName,
  request: {
    format: ExportFormat
    fields?: readonly string[] | null
    filters?: Readonly<Record<string, string | boolean | undefined>>
  },
  escapeFormulas: boolean,
): ExportQuery {
  const table = exportTables[resource]
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
