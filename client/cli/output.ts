import { ProblemError } from '../index.ts'

// What every command shares: exit codes, errors meant for the user, and the way numbers, sizes and
// durations are written.

/** The CLI's exit codes (README, "The CLI"). */
export const exitCodes = {
  /** The command did what it was asked; an import completed with no failed record. */
  done: 0,
  /** The service answered with an error, could not be reached, or a job failed or was cancelled. */
  error: 1,
  /** The command line is wrong: unknown command or option, a missing or bad argument, a file that cannot be read. */
  usage: 2,
  /** An import completed, and some of its records failed (their errors are on the service). */
  failedRecords: 3,
  /** Interrupted (Ctrl-C) and left the job as it was. */
  interrupted: 130,
} as const

/** An error whose message is meant for the user, with the exit code it ends the CLI with. */
export class CliError extends Error {
  readonly exitCode: number
  constructor(message: string, exitCode: number = exitCodes.error) {
    super(message)
    this.name = 'CliError'
    this.exitCode = exitCode
  }
}

export class UsageError extends CliError {
  constructor(message: string) {
    super(message, exitCodes.usage)
  }
}

/** The lines that tell a user what went wrong: a problem's title, detail and each failing field. */
export function describeError(error: unknown, apiUrl: string): string[] {
  if (error instanceof ProblemError) {
    const { problem } = error
    const lines = [`error: ${problem.status} ${problem.title}${problem.detail ? `: ${problem.detail}` : ''}`]
    const fields = (problem as { errors?: { field?: string; message?: string }[] }).errors
    for (const field of fields ?? []) lines.push(`  ${field.field ?? ''}: ${field.message ?? ''}`)
    if (problem.status === 401) lines.push('  (set API_KEY or --api-key to one of the service’s API_KEYS)')
    return lines
  }
  if (error instanceof CliError) return [`error: ${error.message}`]
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause
  if (error instanceof TypeError && cause) {
    return [`error: cannot reach the service at ${apiUrl}: ${cause.code ?? cause.message ?? error.message}`]
  }
  return [`error: ${error instanceof Error ? error.message : String(error)}`]
}

/**
 * Whether an error may pass if the request is made again: the service could not be reached, or
 * answered that it is unavailable for now (503 while it restarts or drains, 502 and 504 from a
 * proxy in front of it).
 */
export function isTransient(error: unknown): boolean {
  if (error instanceof ProblemError) return [502, 503, 504].includes(error.problem.status)
  return error instanceof TypeError // fetch failed: refused, reset, DNS
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })

/** 1234567 → "1,234,567" */
export function count(value: number): string {
  return integer.format(value)
}

/** "1 record", "2,000 records" */
export function counted(value: number, noun: string): string {
  return `${count(value)} ${noun}${value === 1 ? '' : 's'}`
}

/** Bytes in the largest unit that keeps a number ≥ 1: "532 B", "12.4 MB" (powers of 1000). */
export function bytes(value: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB']
  let unit = 0
  let scaled = value
  while (scaled >= 1000 && unit < units.length - 1) {
    scaled /= 1000
    unit++
  }
  return unit === 0 ? `${value} B` : `${scaled.toFixed(scaled < 10 ? 2 : 1)} ${units[unit]}`
}

const sizeUnits: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
}

/** "1048576", "100MiB", "1.5 GB" → bytes; a usage error naming `option` otherwise. */
export function parseSize(text: string, option: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text)
  const unit = sizeUnits[(match?.[2] || 'b').toLowerCase()]
  if (!match || unit === undefined) {
    throw new UsageError(`${option} is a size in bytes, or with a unit (kB, MB, GB, KiB, MiB, GiB), not ${text}`)
  }
  return Math.floor(Number(match[1]) * unit)
}

/** Seconds as a person reads them: "7s", "2m 05s", "1h 02m". */
export function duration(seconds: number): string {
  const whole = Math.max(0, Math.round(seconds))
  if (whole < 60) return `${whole}s`
  if (whole < 3600) return `${Math.floor(whole / 60)}m ${String(whole % 60).padStart(2, '0')}s`
  return `${Math.floor(whole / 3600)}h ${String(Math.floor((whole % 3600) / 60)).padStart(2, '0')}m`
}

/** A short form of a job id, as the progress lines show it. */
export function shortId(id: string): string {
  return id.slice(0, 8)
}

/** Writes a table of rows under a header, columns padded to their widest cell. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]?.length ?? 0)))
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join('  ')
      .trimEnd()
  return `${[line(header), ...rows.map(line)].join('\n')}\n`
}
