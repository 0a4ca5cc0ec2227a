import { type Format, type Resource, streamExport } from '../index.ts'
import { type Context, contextOf, parseCommand, print, printJson, progressFor } from './context.ts'
import { formats, oneOf, resources } from './import.ts'
import { bytes, count, duration, exitCodes, UsageError } from './output.ts'
import { saveBody } from './save.ts'

// `bulk-io export <resource>`: streams the resource's rows to a file or stdout, with progress
// (rows, bytes, rate) on stderr.

export const exportUsage = `Usage: bulk-io export <${resources.join('|')}> [options]

Streams every row of the resource (or those the filters keep), each once, to a file or
to stdout.

Options:
  -f, --format <format>     ndjson (default), csv or json
      --fields <a,b,…>      the columns to export, in this order (default: all)
      --filter <name=value> a filter of the resource's stream route (repeatable), e.g.
                            --filter updated_after=2026-01-01T00:00:00Z
  -o, --output <file>       write the file here (default: stdout); written as <file>.part and
                            renamed when complete
`

export async function exportCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, {
    format: { type: 'string', short: 'f' },
    fields: { type: 'string' },
    filter: { type: 'string', multiple: true },
    output: { type: 'string', short: 'o' },
  })
  if (values.help) {
    await print(exportUsage)
    return exitCodes.done
  }
  const context = contextOf(values)
  const [name, ...extra] = positionals
  if (!name) throw new UsageError(`export: name the resource (${resources.join(', ')})`)
  if (extra.length) throw new UsageError(`export: one resource at a time (also given: ${extra.join(' ')})`)
  const resource = oneOf('the resource', name, resources, true) as Resource
  const format = (oneOf('--format', values.format, formats, false) ?? 'ndjson') as Format
  const fields = values.fields
    ?.split(',')
    .map((field) => field.trim())
    .filter(Boolean)
  const filters: Record<string, string> = {}
  for (const filter of values.filter ?? []) {
    const equals = filter.indexOf('=')
    if (equals <= 0) throw new UsageError(`--filter takes name=value, not ${filter}`)
    filters[filter.slice(0, equals)] = filter.slice(equals + 1)
  }
  return runExport(context, { resource, format, fields, filters, output: values.output })
}

async function runExport(
  context: Context,
  options: { resource: Resource; format: Format; fields?: string[]; filters: Record<string, string>; output?: string },
): Promise<number> {
  const toStdout = options.output === undefined || options.output === '-'
  const controller = new AbortController()
  const interrupt = () => controller.abort()
  process.once('SIGINT', interrupt)
  const progress = progressFor(context, `export ${options.resource}`)
  const rows = rowCounter(options.format)
  const started = performance.now()
  let written = 0
  const state = (phase = 'streaming', counted = rows.count()) => {
    const seconds = Math.max((performance.now() - started) / 1000, 0.001)
    return {
      phase,
      percent: null,
      details: [
        `${count(counted)} rows`,
        bytes(written),
        `${count(counted / seconds)} rows/s`,
        `${bytes(written / seconds)}/s`,
      ],
    }
  }
  try {
    const response = await streamExport(context.client, {
      resource: options.resource,
      format: options.format,
      fields: options.fields,
      filters: options.filters,
      signal: controller.signal,
    })
    const saved = await saveBody(response.body, options.output, (chunk) => {
      written += chunk.byteLength
      rows.add(chunk)
      progress.update(state())
    })
    progress.update(state(saved.closedEarly ? 'stopped (output closed)' : 'done', rows.final()))
    progress.stop()
    const summary = {
      resource: options.resource,
      format: options.format,
      rows: rows.final(),
      bytes: saved.bytes,
      seconds: Number(((performance.now() - started) / 1000).toFixed(3)),
      output: toStdout ? null : options.output,
    }
    if (context.json && !toStdout) await printJson(summary)
    else if (context.json) process.stderr.write(`${JSON.stringify(summary)}\n`)
    else if (!saved.closedEarly) {
      const where = toStdout ? 'stdout' : options.output
      process.stderr.write(
        `exported ${count(summary.rows)} ${options.resource} (${bytes(summary.bytes)}, ${options.format}) to ${where} in ${duration(summary.seconds)}\n`,
      )
    }
    return exitCodes.done
  } catch (error) {
    progress.stop()
    if (controller.signal.aborted) {
      process.stderr.write('interrupted: the export stopped (no file was left behind)\n')
      return exitCodes.interrupted
    }
    throw error
  } finally {
    process.removeListener('SIGINT', interrupt)
  }
}

/**
 * Counts the rows of an export as its bytes go by. NDJSON: one per line. JSON: one per line
 * between `[` and `]`. CSV: one per line break outside quotes (a field may hold line breaks),
 * less the header.
 */
export function rowCounter(format: Format) {
  let breaks = 0
  let quoted = false
  return {
    add(chunk: Uint8Array) {
      if (format === 'csv') {
        for (const byte of chunk) {
          if (byte === 0x22) quoted = !quoted
          else if (byte === 0x0a && !quoted) breaks++
        }
      } else {
        for (let at = chunk.indexOf(0x0a); at >= 0; at = chunk.indexOf(0x0a, at + 1)) breaks++
      }
    },
    /** The rows seen so far. */
    count: () => (format === 'ndjson' ? breaks : Math.max(0, breaks - 1)),
    /** The rows of the whole file (JSON's closing line is not a row). */
    final: () => (format === 'ndjson' ? breaks : Math.max(0, breaks - (format === 'json' ? 2 : 1))),
  }
}
