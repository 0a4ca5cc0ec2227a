import { type ParseArgsConfig, parseArgs } from 'node:util'
import { type BulkIoClient, createClient } from '../index.ts'
import { UsageError } from './output.ts'
import { Progress, type ProgressMode } from './progress.ts'

// What each command is given: the client of the service, how to write its output, and its own
// options parsed beside the global ones.

export interface Context {
  client: BulkIoClient
  apiUrl: string
  /** --json: machine-readable output on stdout, no summary prose. */
  json: boolean
  progressMode: ProgressMode
  /** Milliseconds between two progress lines when stderr is not a terminal. */
  progressIntervalMs: number
  /** Ctrl-C may ask a question: stdin and stderr are terminals. */
  interactive: boolean
}

type Options = NonNullable<ParseArgsConfig['options']>

/** Options every command takes (README, "The CLI"). */
export const globalOptions = {
  'api-url': { type: 'string' },
  'api-key': { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  'progress-interval': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options

export const DEFAULT_API_URL = 'http://127.0.0.1:8080'
const DEFAULT_PROGRESS_INTERVAL_SECONDS = 5

/** A command's arguments, with its own options and the global ones; usage errors as UsageError. */
export function parseCommand<const O extends Options>(args: string[], options: O) {
  try {
    return parseArgs({ args, options: { ...globalOptions, ...options }, allowPositionals: true, strict: true })
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
}

export function contextOf(values: {
  'api-url'?: string
  'api-key'?: string
  json?: boolean
  quiet?: boolean
  'progress-interval'?: string
}): Context {
  const apiUrl = values['api-url'] ?? process.env.API_URL ?? DEFAULT_API_URL
  try {
    const url = new URL(apiUrl)
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http')
  } catch {
    throw new UsageError(`--api-url / API_URL must be an http(s) URL, not ${JSON.stringify(apiUrl)}`)
  }
  const interval = Number(values['progress-interval'] ?? DEFAULT_PROGRESS_INTERVAL_SECONDS)
  if (!Number.isFinite(interval) || interval <= 0) {
    throw new UsageError('--progress-interval is a number of seconds above 0')
  }
  const apiKey = values['api-key'] ?? process.env.API_KEY
  return {
    client: createClient({ baseUrl: apiUrl, apiKey: apiKey || undefined }),
    apiUrl,
    json: values.json ?? false,
    progressMode: values.quiet ? 'none' : process.stderr.isTTY ? 'bar' : 'lines',
    progressIntervalMs: interval * 1000,
    interactive: Boolean(process.stdin.isTTY && process.stderr.isTTY),
  }
}

export function progressFor(context: Context, subject: string): Progress {
  return new Progress({
    stream: process.stderr,
    mode: context.progressMode,
    subject,
    intervalMs: context.progressIntervalMs,
  })
}

/** Writes to stdout, resolving once the text is handed over (so that exit loses nothing). */
export function print(text: string): Promise<void> {
  return new Promise((resolve) => {
    if (process.stdout.write(text)) resolve()
    else process.stdout.once('drain', resolve)
  })
}

/** Writes a value as JSON on stdout (--json). */
export function printJson(value: unknown): Promise<void> {
  return print(`${JSON.stringify(value, null, 2)}\n`)
}
