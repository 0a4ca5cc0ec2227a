import type { Sql } from '../../db/connection.ts'
import { importErrorPages } from '../../db/imports.ts'
import { recordErrorView } from './job-view.ts'

export const ERROR_REPORT_CSV_HEADER = 'line,record,id,field,code,message,value\n'

/**
 * Every per-record error of a job, in record order, as NDJSON lines (one RecordError each) or as
 * CSV rows under a header; read from the database a page at a time, one chunk per page.
 */
export async function* errorReport(sql: Sql, jobId: string, format: 'ndjson' | 'csv'): AsyncGenerator<string> {
  const csv = format === 'csv'
  if (csv) yield ERROR_REPORT_CSV_HEADER
  for await (const page of importErrorPages(sql, jobId)) {
    let text = ''
    for (const row of page) {
      const error = recordErrorView(row)
      text += csv
        ? `${[error.line, error.record, error.id, error.field, error.code, error.message, error.value].map(csvCell).join(',')}\n`
        : `${JSON.stringify(error)}\n`
    }
    yield text
  }
}

/** A CSV cell (RFC 4180): quoted when it holds a comma, a quote or a line break. */
function csvCell(value: string | number | undefined): string {
  if (value === undefined) return ''
  const text = String(value)
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}
