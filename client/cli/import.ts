import { openAsBlob } from 'node:fs'
import { stat } from 'node:fs/promises'
import { basename } from 'node:path'
import { createInterface } from 'node:readline/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  createUpload,
  dataOf,
  directImport,
  type Format,
  type ImportJob,
  importEvents,
  ProblemError,
  type Resource,
  sendUpload,
  type Upload,
  uploadImport,
  urlImport,
} from '../index.ts'
import { type Context, contextOf, parseCommand, print, printJson, progressFor } from './context.ts'
import {
  bytes,
  CliError,
  count,
  counted,
  duration,
  exitCodes,
  isTransient,
  parseSize,
  shortId,
  UsageError,
} from './output.ts'
import type { Progress, ProgressState } from './progress.ts'

// `bulk-io import <file|url> --resource <name>`: uploads the file (or has the service download the
// URL), follows the job's events with a progress bar, and ends with a summary, where to fetch the
// errors, and an exit code that says how it went. A large file goes straight to the service's
// object store (a direct upload, STORAGE=s3), or through the service when it has none.

export const resources = ['users', 'articles', 'comments'] as const
export const formats = ['csv', 'ndjson', 'json'] as const

/** Files larger than this go to the object store directly (--direct-threshold). */
export const DEFAULT_DIRECT_THRESHOLD = 100 * 1024 * 1024
/** Parts of a direct upload sent at once. */
const DIRECT_CONCURRENCY = 4

export const importUsage = `Usage: bulk-io import <file|url> --resource <${resources.join('|')}> [options]

Uploads a CSV, NDJSON or JSON-array file (optionally gzip-compressed), or has the service download
an http(s) URL, then shows the job's progress until it ends.

Options:
  -r, --resource <name>        users, articles or comments (required)
  -f, --format <format>        csv, ndjson or json (default: from the file name or its content)
      --dry-run                validate against the database, write nothing
      --idempotency-key <key>  a retry with the same key and file gives the same job (the file
                               goes through the service then, unless --direct)
      --detach                 print the queued job and return without waiting for it
      --direct-threshold <size>
                               files larger than this go straight to the service's object store
                               (a direct upload, when the service has STORAGE=s3): bytes, or with
                               a unit, e.g. 250MiB or 1GB (default: 100MiB)
      --direct                 a direct upload whatever the file's size
      --no-direct              the file goes through the service whatever its size

A direct upload PUTs the file to presigned URLs of the store, ${DIRECT_CONCURRENCY} parts at a time (each tried
again on failure), then the import names it; Ctrl-C aborts it. A service that keeps its files on
disk (STORAGE=fs) has no direct uploads: the file goes through the service then.
`

export async function importCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, {
    resource: { type: 'string', short: 'r' },
    format: { type: 'string', short: 'f' },
    'dry-run': { type: 'boolean' },
    'idempotency-key': { type: 'string' },
    detach: { type: 'boolean' },
    'direct-threshold': { type: 'string' },
    direct: { type: 'boolean' },
    'no-direct': { type: 'boolean' },
  })
  if (values.help) {
    await print(importUsage)
    return exitCodes.done
  }
  const context = contextOf(values)
  const [source, ...extra] = positionals
  if (!source) throw new UsageError('import: name the file (or http(s) URL) to import')
  if (extra.length) throw new UsageError(`import: one file at a time (also given: ${extra.join(' ')})`)
  const resource = oneOf('--resource', values.resource, resources, true) as Resource
  const format = oneOf('--format', values.format, formats, false) as Format | undefined
  const common = { resource, format, dryRun: values['dry-run'], idempotencyKey: values['idempotency-key'] }
  if (values.direct && values['no-direct']) throw new UsageError('import: --direct or --no-direct, not both')
  const threshold =
    values['direct-threshold'] === undefined
      ? DEFAULT_DIRECT_THRESHOLD
      : parseSize(values['direct-threshold'], '--direct-threshold')

  let job: ImportJob
  let subject: string
  if (/^https?:\/\//i.test(source)) {
    subject = basename(new URL(source).pathname) || source
    job = await urlImport(context.client, { ...common, url: source })
  } else {
    const file = await readableFile(source)
    subject = basename(source)
    const options = { ...common, file, filename: subject }
    // Empty files have nothing to put; a retry of an idempotency key must send the same file
    // (a direct upload is a new upload each time), unless asked otherwise.
    const direct =
      file.size > 0 &&
      !values['no-direct'] &&
      (values.direct || (file.size > threshold && values['idempotency-key'] === undefined))
    job =
      (direct ? await uploadDirect(context, options, subject) : undefined) ?? (await upload(context, options, subject))
  }
  const progress = progressFor(context, subject)
  progress.note(
    `import ${job.id} ${job.status}: ${resource}${job.format ? `, ${job.format}` : ''}${job.dry_run ? ', dry run' : ''}`,
  )
  if (values.detach) {
    if (context.json) await printJson(job)
    else await print(`${job.id}\n`)
    return exitCodes.done
  }
  const final = await followImport(context, job, progress)
  if (final === 'left') return exitCodes.interrupted
  return reportImport(context, final)
}

/** A value of a closed list of choices, or a usage error naming them. */
export function oneOf(name: string, value: string | undefined, choices: readonly string[], required: boolean) {
  if (value === undefined) {
    if (required) throw new UsageError(`${name} is required (${choices.join(', ')})`)
    return undefined
  }
  if (!choices.includes(value)) throw new UsageError(`${name} must be one of ${choices.join(', ')}, not ${value}`)
  return value
}

async function readableFile(path: string): Promise<Blob> {
  try {
    const info = await stat(path)
    if (!info.isFile()) throw new UsageError(`import: ${path} is not a file`)
    return await openAsBlob(path)
  } catch (error) {
    if (error instanceof UsageError) throw error
    throw new UsageError(`import: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`)
  }
}

/** The upload, with its own progress; Ctrl-C abandons it (no job is created). */
async function upload(
  context: Context,
  options: Omit<Parameters<typeof uploadImport>[1], 'onProgress' | 'signal'>,
  subject: string,
): Promise<ImportJob> {
  const progress = progressFor(context, subject)
  const started = performance.now()
  const controller = new AbortController()
  const interrupt = () => controller.abort()
  process.once('SIGINT', interrupt)
  try {
    return await uploadImport(context.client, {
      ...options,
      signal: controller.signal,
      onProgress: (sent, total) => {
        const seconds = (performance.now() - started) / 1000
        progress.update({
          phase: 'uploading',
          percent: total ? (sent / total) * 100 : 100,
          details: [`${bytes(sent)} of ${bytes(total)}`, seconds > 0.2 ? `${bytes(sent / seconds)}/s` : ''].filter(
            Boolean,
          ),
        })
      },
    })
  } catch (error) {
    if (controller.signal.aborted) throw new CliError('interrupted: the upload stopped, no job was created', 130)
    throw error
  } finally {
    process.removeListener('SIGINT', interrupt)
    progress.stop()
  }
}

/**
 * A direct upload (POST /api/v1/uploads, the parts PUT to the store, complete), then the import
 * of it: the queued job; undefined when the service has no direct uploads (STORAGE=fs answers
 * 409, a service from before them 404), for the caller to upload through the service. Ctrl-C
 * aborts the upload.
 */
async function uploadDirect(
  context: Context,
  options: Omit<Parameters<typeof uploadImport>[1], 'onProgress' | 'signal'>,
  subject: string,
): Promise<ImportJob | undefined> {
  const { client } = context
  const progress = progressFor(context, subject)
  const controller = new AbortController()
  const interrupt = () => controller.abort()
  process.once('SIGINT', interrupt)
  let upload: Upload | undefined
  let uploaded = false
  try {
    try {
      upload = await createUpload(client, {
        sizeBytes: options.file.size,
        filename: options.filename,
        signal: controller.signal,
      })
    } catch (error) {
      // 409: STORAGE=fs; 404: a service from before direct uploads.
      if (error instanceof ProblemError && (error.problem.status === 409 || error.problem.status === 404)) {
        const why =
          error.problem.status === 409 ? 'the service keeps its files on disk (STORAGE=fs)' : 'the service has none'
        progress.note(`no direct upload: ${why}; ${options.filename} goes through the service`)
        return undefined
      }
      throw error
    }
    const parts = upload.url !== null ? 1 : upload.parts.length
    progress.note(
      `direct upload ${upload.id}: ${bytes(upload.size_bytes)} to the object store` +
        (parts > 1 ? ` in ${parts} parts of ${bytes(upload.part_size_bytes ?? 0)}` : ''),
    )
    const started = performance.now()
    await sendUpload(client, upload, {
      file: options.file,
      concurrency: DIRECT_CONCURRENCY,
      signal: controller.signal,
      onProgress: ({ sent, total, partsDone, parts }) => {
        const seconds = (performance.now() - started) / 1000
        progress.update({
          phase: 'uploading',
          percent: total ? (sent / total) * 100 : 100,
          details: [
            `${bytes(sent)} of ${bytes(total)}`,
            seconds > 0.2 ? `${bytes(sent / seconds)}/s` : '',
            parts > 1 ? `${partsDone}/${parts} parts` : '',
          ].filter(Boolean),
        })
      },
      onRetry: ({ attempt, attempts, delayMs, error }) => {
        progress.note(
          `${error.message}; trying it again in ${duration(delayMs / 1000)} (try ${attempt + 1} of ${attempts})`,
        )
      },
    })
    uploaded = true
    return await directImport(client, {
      resource: options.resource,
      uploadId: upload.id,
      format: options.format,
      dryRun: options.dryRun,
      idempotencyKey: options.idempotencyKey,
      signal: controller.signal,
    })
  } catch (error) {
    if (controller.signal.aborted) {
      throw new CliError(
        upload && !uploaded
          ? `interrupted: the direct upload ${upload.id} was aborted, no job was created`
          : 'interrupted: no job was created',
        exitCodes.interrupted,
      )
    }
    if (upload && !uploaded)
      throw new CliError(`the direct upload ${upload.id} failed and was aborted: ${(error as Error).message}`)
    throw error
  } finally {
    process.removeListener('SIGINT', interrupt)
    progress.stop()
  }
}

/** How a job's state reads on the bar or a progress line. */
export function importState(job: ImportJob): ProgressState {
  const { counters, progress } = job
  const failed = counters.failed ? [`${count(counters.failed)} failed`] : []
  if (job.done) {
    return {
      phase: job.status,
      percent: job.status === 'completed' ? 100 : progress.percent,
      details: [counted(counters.processed, 'record'), ...failed],
    }
  }
  if (job.status === 'queued') return { phase: 'queued', percent: null, details: ['waiting for a job runner'] }
  if (progress.waiting) {
    return {
      phase: `waiting (${progress.waiting.reason})`,
      percent: progress.percent,
      details: [progress.waiting.detail, ...failed],
    }
  }
  return {
    phase: 'running',
    percent: progress.percent,
    details: [
      counted(counters.processed, 'record'),
      progress.rows_per_second !== null ? `${count(progress.rows_per_second)} rows/s` : '',
      progress.eta_seconds !== null ? `ETA ${duration(progress.eta_seconds)}` : '',
      ...failed,
    ].filter(Boolean),
  }
}

/** How long the events may fail in a row (service restarting, network) before the CLI gives up. */
const RECONNECT_LIMIT_MS = 60_000

/**
 * Follows an import until it is done: its events drive the progress; a stream that ends early
 * (the service restarting) is opened again. Ctrl-C asks whether to cancel the job (when a person
 * can answer), or leaves it running: 'left'.
 */
export async function followImport(context: Context, job: ImportJob, progress: Progress): Promise<ImportJob | 'left'> {
  let last = job
  let left = false
  let asking: AbortController | undefined
  let events = new AbortController()
  const leave = () => {
    left = true
    events.abort()
  }
  const onInterrupt = async () => {
    if (asking) return
    if (!context.interactive) return leave()
    asking = new AbortController()
    progress.suspend()
    const answer = await ask(`Cancel import ${job.id}? Batches already committed stay. [y/N] `, asking.signal)
    const ended = asking.signal.aborted
    asking = undefined
    if (ended) return // the job ended while the question was asked
    if (answer === null) return leave()
    if (/^y(es)?$/i.test(answer.trim())) {
      try {
        last = dataOf(await context.client.POST('/api/v1/imports/{id}/cancel', { params: { path: { id: job.id } } }))
        progress.note(`cancelling import ${shortId(job.id)}: it stops at its next batch`)
      } catch (error) {
        progress.note(`could not cancel: ${(error as Error).message}`)
      }
    }
    progress.resume()
  }
  process.on('SIGINT', onInterrupt)
  progress.update(importState(last))
  let failingSince: number | undefined
  try {
    while (!left) {
      try {
        for await (const event of importEvents(context.client, job.id, events.signal)) {
          failingSince = undefined
          last = event.job
          progress.update(importState(last))
          if (last.done) return last
        }
      } catch (error) {
        if (left) break
        if (!isTransient(error)) throw error
        failingSince ??= Date.now()
      }
      if (left) break
      // The stream ended before the job did (the service restarts, or the network failed): look
      // again, and reopen it.
      await sleep(1000)
      try {
        last = dataOf(await context.client.GET('/api/v1/imports/{id}', { params: { path: { id: job.id } } }))
        failingSince = undefined
        if (last.done) {
          progress.update(importState(last))
          return last
        }
      } catch (error) {
        if (!isTransient(error)) throw error
        failingSince ??= Date.now()
      }
      if (failingSince !== undefined && Date.now() - failingSince > RECONNECT_LIMIT_MS) {
        throw new CliError(
          `lost contact with the service for ${RECONNECT_LIMIT_MS / 1000}s; the job goes on there: bulk-io jobs watch ${job.id}`,
        )
      }
      events = new AbortController()
    }
    progress.note(
      `left import ${job.id} ${last.status}; follow it with: bulk-io jobs watch ${job.id}, or stop it with: bulk-io jobs cancel ${job.id}`,
    )
    return 'left'
  } finally {
    process.removeListener('SIGINT', onInterrupt)
    // A question still on screen goes: the job ended meanwhile.
    asking?.abort()
    progress.stop()
  }
}

/** A question on the terminal; null when it is answered by another Ctrl-C (or `signal` withdraws it). */
async function ask(question: string, signal: AbortSignal): Promise<string | null> {
  const lines = createInterface({ input: process.stdin, output: process.stderr, terminal: true })
  const controller = new AbortController()
  lines.on('SIGINT', () => controller.abort())
  signal.addEventListener('abort', () => controller.abort(), { once: true })
  try {
    return await lines.question(`\n${question}`, { signal: controller.signal })
  } catch {
    process.stderr.write('\n')
    return null
  } finally {
    lines.close()
  }
}

/** The summary of a finished import, and its exit code. */
export async function reportImport(context: Context, job: ImportJob): Promise<number> {
  const code =
    job.status !== 'completed' ? exitCodes.error : job.counters.failed > 0 ? exitCodes.failedRecords : exitCodes.done
  if (context.json) {
    await printJson(job)
    return code
  }
  const { processed, inserted, updated, failed } = job.counters
  const seconds =
    job.started_at && job.finished_at ? (Date.parse(job.finished_at) - Date.parse(job.started_at)) / 1000 : null
  const took = seconds !== null ? ` in ${duration(seconds)}` : ''
  const rate = seconds && processed >= 1000 ? ` (${count(processed / Math.max(seconds, 0.001))} records/s)` : ''
  const lines: string[] = []
  const what = job.dry_run ? 'dry run of import' : 'import'
  const tally = `${counted(processed, 'record')}: ${count(inserted)} inserted, ${count(updated)} updated, ${count(failed)} failed`
  if (job.status === 'completed') lines.push(`${what} ${job.id} completed${took}: ${tally}${rate}`)
  else if (job.status === 'cancelled')
    lines.push(`${what} ${job.id} cancelled${took}: ${tally} (committed batches stay)`)
  else {
    const problem = job.error as { title?: string; detail?: string; code?: string } | null
    lines.push(
      `${what} ${job.id} failed${took}: ${problem?.title ?? 'unknown error'}${problem?.detail ? `: ${problem.detail}` : ''}`,
    )
    lines.push(`  before it failed: ${tally}`)
  }
  if (job.dry_run) lines.push('  (a dry run: nothing was written)')
  for (const warning of job.warnings) lines.push(`warning: ${warning}`)
  if (failed > 0) {
    lines.push('', `The first errors (of ${count(failed)} failed record${failed === 1 ? '' : 's'}):`)
    for (const error of job.errors.slice(0, 10)) {
      const where = `line ${error.line}${error.field ? `, ${error.field}` : ''}`
      lines.push(`  ${where}: ${error.message}${error.value !== undefined ? ` (${JSON.stringify(error.value)})` : ''}`)
    }
    const url = (path: string) => `${context.apiUrl.replace(/\/+$/, '')}${path}`
    lines.push(
      '',
      `Every error:         bulk-io jobs errors ${job.id} [--format csv] [-o errors.ndjson]`,
      `                     (GET ${url(job.errors_url)})`,
      `The failed records:  bulk-io jobs failed-records ${job.id} -o failed.${job.format ?? 'csv'}`,
      `                     (GET ${url(job.failed_records_url)}); fix them and import that file`,
    )
  }
  await print(`${lines.join('\n')}\n`)
  return code
}
