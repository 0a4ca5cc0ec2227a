import { setTimeout as sleep } from 'node:timers/promises'
import { dataOf, type ExportJob, type ImportJob } from '../index.ts'
import { type Context, contextOf, parseCommand, print, printJson, progressFor } from './context.ts'
import { followImport, oneOf, reportImport, resources } from './import.ts'
import { bytes, CliError, count, exitCodes, table, UsageError } from './output.ts'
import { saveBody } from './save.ts'

// `bulk-io jobs …`: list import and export jobs, show one, follow one, cancel an import, and fetch
// what a job left: an import's errors and failed records, an export's file.

export const jobsUsage = `Usage: bulk-io jobs <command> [options]

Commands:
  list [--kind imports|exports] [--status <s>] [--resource <r>] [--limit <n>] [--cursor <c>]
                                 the newest jobs first (default: both kinds, 20 of each)
  show <id>                      one job (import or export), as it is now
  watch <id>                     follow a job with a progress bar until it ends (exit codes as import)
  cancel <id>                    stop an import (committed batches stay)
  errors <id> [--format ndjson|csv] [-o <file>]
                                 every per-record error of an import
  failed-records <id> [-o <file>]
                                 an import's rejected records, as uploaded: fix them and import the file
  download <id> [-o <file>]      the file of a completed export job
`

const statuses = ['queued', 'running', 'completed', 'failed', 'cancelled']
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export async function jobsCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, {
    kind: { type: 'string' },
    status: { type: 'string' },
    resource: { type: 'string', short: 'r' },
    limit: { type: 'string' },
    cursor: { type: 'string' },
    format: { type: 'string', short: 'f' },
    output: { type: 'string', short: 'o' },
  })
  const [command = 'list', id, ...extra] = positionals
  if (values.help) {
    await print(jobsUsage)
    return exitCodes.done
  }
  const context = contextOf(values)
  if (extra.length) throw new UsageError(`jobs ${command}: unexpected ${extra.join(' ')}`)
  if (command === 'list') {
    if (id) throw new UsageError(`jobs list takes no id (did you mean: jobs show ${id}?)`)
    return list(context, values)
  }
  const commands: Record<string, (context: Context, id: string) => Promise<number>> = {
    show,
    watch,
    cancel,
    errors: (context, id) => errors(context, id, values.format, values.output),
    'failed-records': (context, id) => failedRecords(context, id, values.output),
    download: (context, id) => download(context, id, values.output),
  }
  const run = commands[command]
  if (!run) throw new UsageError(`jobs: unknown command ${command} (list, ${Object.keys(commands).join(', ')})`)
  if (!id) throw new UsageError(`jobs ${command}: name the job's id`)
  if (!uuid.test(id)) throw new UsageError(`jobs ${command}: ${id} is not a job id (a UUID)`)
  return run(context, id)
}

async function list(
  context: Context,
  values: { kind?: string; status?: string; resource?: string; limit?: string; cursor?: string },
): Promise<number> {
  const kind = oneOf('--kind', values.kind, ['imports', 'exports'], false)
  const query = {
    status: oneOf('--status', values.status, statuses, false),
    resource: oneOf('--resource', values.resource, resources, false),
    limit: values.limit === undefined ? 20 : Number(values.limit),
    cursor: values.cursor,
  }
  if (!Number.isInteger(query.limit) || query.limit < 1) throw new UsageError('--limit is a whole number above 0')
  if (query.cursor && !kind) throw new UsageError('--cursor needs --kind (each kind pages on its own)')
  const params = { query: query as never }
  const imports = kind !== 'exports' ? dataOf(await context.client.GET('/api/v1/imports', { params })) : undefined
  const exports = kind !== 'imports' ? dataOf(await context.client.GET('/api/v1/exports', { params })) : undefined
  if (context.json) {
    await printJson({ ...(imports ? { imports } : {}), ...(exports ? { exports } : {}) })
    return exitCodes.done
  }
  const rows = [
    ...(imports?.items ?? []).map((job) => ({ created: job.created_at, cells: importRow(job) })),
    ...(exports?.items ?? []).map((job) => ({ created: job.created_at, cells: exportRow(job) })),
  ].sort((a, b) => b.created.localeCompare(a.created))
  let text = table(
    ['ID', 'KIND', 'RESOURCE', 'STATUS', 'PROGRESS', 'CREATED'],
    rows.map((row) => row.cells),
  )
  if (rows.length === 0) text = 'no jobs\n'
  for (const [name, page] of [
    ['imports', imports],
    ['exports', exports],
  ] as const) {
    if (page?.next_cursor) text += `more ${name}: bulk-io jobs list --kind ${name} --cursor ${page.next_cursor}\n`
  }
  await print(text)
  return exitCodes.done
}

function importRow(job: ImportJob): string[] {
  const { processed, failed } = job.counters
  const percent = !job.done && job.progress.percent !== null ? `${job.progress.percent.toFixed(0)}%, ` : ''
  return [
    job.id,
    job.dry_run ? 'import (dry run)' : 'import',
    job.resource,
    job.status,
    `${percent}${count(processed)} records, ${count(failed)} failed`,
    job.created_at,
  ]
}

function exportRow(job: ExportJob): string[] {
  const expired = job.expired ? ', expired' : ''
  return [
    job.id,
    'export',
    job.resource,
    job.status,
    `${count(job.counters.rows)} rows, ${bytes(job.counters.bytes)}${expired}`,
    job.created_at,
  ]
}

type FoundJob = { kind: 'import'; job: ImportJob } | { kind: 'export'; job: ExportJob }

/** The import or export job of this id. */
async function findJob(context: Context, id: string): Promise<FoundJob> {
  const params = { path: { id } }
  const asImport = await context.client.GET('/api/v1/imports/{id}', { params })
  if (asImport.data) return { kind: 'import', job: asImport.data }
  if (asImport.response.status !== 404) dataOf(asImport)
  const asExport = await context.client.GET('/api/v1/exports/{id}', { params })
  if (asExport.data) return { kind: 'export', job: asExport.data }
  if (asExport.response.status !== 404) dataOf(asExport)
  throw new CliError(`no import or export job has the id ${id}`)
}

async function show(context: Context, id: string): Promise<number> {
  const found = await findJob(context, id)
  if (context.json) {
    await printJson({ kind: found.kind, ...found.job })
    return exitCodes.done
  }
  const url = (path: string | null) => (path ? `${context.apiUrl.replace(/\/+$/, '')}${path}` : '-')
  const lines: [string, string][] = []
  if (found.kind === 'import') {
    const job = found.job
    const { counters, progress } = job
    lines.push(
      ['kind', job.dry_run ? 'import (dry run)' : 'import'],
      ['resource', job.resource],
      ['format', job.format ?? '(from the download)'],
      ['status', job.status],
      ['source', job.source.filename ?? job.source.url ?? job.source.type],
      ['size', job.source.size_bytes === null ? '-' : bytes(job.source.size_bytes)],
      ['created', job.created_at],
      ['started', job.started_at ?? '-'],
      ['finished', job.finished_at ?? '-'],
      [
        'records',
        `${count(counters.processed)} processed: ${count(counters.inserted)} inserted, ${count(counters.updated)} updated, ${count(counters.failed)} failed`,
      ],
    )
    if (!job.done) {
      lines.push(['progress', progress.percent === null ? '-' : `${progress.percent.toFixed(1)}%`])
      if (progress.waiting) lines.push(['waiting', `${progress.waiting.reason}: ${progress.waiting.detail}`])
    }
    for (const warning of job.warnings) lines.push(['warning', warning])
    if (job.error) {
      const problem = job.error as { title?: string; detail?: string }
      lines.push(['error', `${problem.title ?? ''}${problem.detail ? `: ${problem.detail}` : ''}`])
    }
    if (counters.failed) {
      lines.push(['errors', url(job.errors_url)], ['failed records', url(job.failed_records_url)])
    }
  } else {
    const job = found.job
    lines.push(
      ['kind', 'export'],
      ['resource', job.resource],
      ['format', `${job.format}${job.compression === 'gzip' ? ', gzip' : ''}`],
      ['status', job.status],
      ['created', job.created_at],
      ['started', job.started_at ?? '-'],
      ['finished', job.finished_at ?? '-'],
      ['rows', count(job.counters.rows)],
      ['bytes', bytes(job.counters.bytes)],
      ['download', job.expired ? '(expired)' : url(job.download_url)],
      ['expires', job.expires_at ?? '-'],
      ['sha256', job.sha256 ?? '-'],
    )
    if (job.error) {
      const problem = job.error as { title?: string; detail?: string }
      lines.push(['error', `${problem.title ?? ''}${problem.detail ? `: ${problem.detail}` : ''}`])
    }
  }
  const width = Math.max(...lines.map(([name]) => name.length))
  await print(`${found.kind} ${id}\n${lines.map(([name, value]) => `  ${name.padEnd(width)}  ${value}`).join('\n')}\n`)
  return exitCodes.done
}

async function watch(context: Context, id: string): Promise<number> {
  const found = await findJob(context, id)
  if (found.kind === 'import') {
    const final = await followImport(context, found.job, progressFor(context, `import ${id.slice(0, 8)}`))
    return final === 'left' ? exitCodes.interrupted : reportImport(context, final)
  }
  // Export jobs have no event stream: their status is read once a second.
  const progress = progressFor(context, `export ${id.slice(0, 8)}`)
  let job = found.job
  for (;;) {
    progress.update({
      phase: job.status,
      percent: job.status === 'completed' ? 100 : null,
      details: [`${count(job.counters.rows)} rows`, bytes(job.counters.bytes)],
    })
    if (job.done) break
    await sleep(1000)
    job = dataOf(await context.client.GET('/api/v1/exports/{id}', { params: { path: { id } } }))
  }
  progress.stop()
  if (context.json) await printJson(job)
  else if (job.status === 'completed')
    await print(`export ${id} completed: download it with bulk-io jobs download ${id}\n`)
  else await print(`export ${id} ${job.status}\n`)
  return job.status === 'completed' ? exitCodes.done : exitCodes.error
}

async function cancel(context: Context, id: string): Promise<number> {
  const found = await findJob(context, id)
  if (found.kind === 'export') throw new CliError('export jobs cannot be cancelled; their files expire on their own')
  const job = dataOf(await context.client.POST('/api/v1/imports/{id}/cancel', { params: { path: { id } } }))
  if (context.json) await printJson(job)
  else if (job.status === 'cancelled') await print(`import ${id} cancelled\n`)
  else if (job.done) await print(`import ${id} had already ended: ${job.status}\n`)
  else await print(`import ${id} is cancelling: it stops at its next batch (bulk-io jobs watch ${id})\n`)
  return exitCodes.done
}

async function errors(context: Context, id: string, format: string | undefined, output?: string): Promise<number> {
  const chosen = oneOf('--format', format, ['ndjson', 'csv'], false) as 'ndjson' | 'csv' | undefined
  const result = await context.client.GET('/api/v1/imports/{id}/errors', {
    params: { path: { id }, query: chosen ? { format: chosen } : {} },
    parseAs: 'stream',
  })
  if (result.error !== undefined) dataOf(result)
  return saved(await saveBody(result.response.body, output), output)
}

async function failedRecords(context: Context, id: string, output?: string): Promise<number> {
  const result = await context.client.GET('/api/v1/imports/{id}/failed-records', {
    params: { path: { id } },
    parseAs: 'stream',
  })
  if (result.error !== undefined) dataOf(result)
  return saved(await saveBody(result.response.body, output), output)
}

async function download(context: Context, id: string, output?: string): Promise<number> {
  const result = await context.client.GET('/api/v1/exports/{id}/download', {
    params: { path: { id } },
    parseAs: 'stream',
  })
  if (result.error !== undefined) {
    if (result.response.status === 404) {
      // Not an export: say so plainly, rather than the route's "no such export".
      const found = await findJob(context, id).catch(() => undefined)
      if (found?.kind === 'import') throw new CliError(`${id} is an import job; download takes an export job`)
    }
    dataOf(result)
  }
  return saved(await saveBody(result.response.body, output), output)
}

async function saved(result: { bytes: number }, output?: string): Promise<number> {
  if (output !== undefined && output !== '-') process.stderr.write(`wrote ${bytes(result.bytes)} to ${output}\n`)
  return exitCodes.done
}
