import type { ResourceDescriptor } from './resource.ts'

// A resource's example records as the files a user would upload: docs/api.md shows them
// (`make generate`), and test/resources/examples.test.ts imports these very files.

function csvCell(value: unknown): string {
  if (value === undefined || value === null) return ''
  const text = Array.isArray(value) ? value.join('|') : String(value)
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

/** The examples as CSV: a header of the resource's columns, a line per record (tags joined by `|`). */
export function exampleCsv(resource: ResourceDescriptor): string {
  const lines = [resource.columns.join(',')]
  for (const record of resource.examples) lines.push(resource.columns.map((column) => csvCell(record[column])).join(','))
  return `${lines.join('\n')}\n`
}

/** The examples as NDJSON: one JSON object per line, with only the fields each record has. */
export function exampleNdjson(resource: ResourceDescriptor): string {
  return resource.examples.map((record) => `${JSON.stringify(record)}\n`).join('')
}
