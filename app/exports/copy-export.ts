import type { Writable } from 'node:stream'
import type { TransactionSql } from 'postgres'
import type { Sql } from '../../db/connection.ts'
import { isDatabaseUnavailable } from '../../db/errors.ts'
import type { ExportFormat } from '../../db/exports.ts'

// PostgreSQL writes an export's bytes itself (COPY … TO STDOUT, see db/exports.ts): measured
// here, COPY produced 1M users as CSV in about 1.3 s where a cursor and JSON.stringify took 8 s.
// This module moves those bytes to a sink (an HTTP response, a file) without parsing them: it
// only frames rows (the JSON array's brackets and commas) and gathers them into large chunks,
// since PostgreSQL sends each row as a message of its own.

/** Bytes gathered before a chunk goes to the sink. */
const CHUNK_BYTES = 64 * 1024

/** The sink closed or the caller aborted before the export ended (a client went away). */
export class ExportAborted extends Error {
  constructor(reason: string) {
    super(reason)
    this.name = 'ExportAborted'
  }
}

/**
 * Turns COPY's row messages into the export format's bytes, in chunks of about CHUNK_BYTES:
 * CSV and NDJSON rows pass as they are; a JSON export is an array with one element per line.
 */
export class RowFramer {
  /** Data rows seen (the CSV header is not one). */
  rows = 0
  /** Bytes handed out. */
  bytes = 0
  private buffer = Buffer.allocUnsafe(CHUNK_BYTES)
  private length = 0
  private headerPending: boolean
  private readonly json: boolean
  private readonly emit: (chunk: Buffer) => boolean

  /** `emit` receives each chunk and answers false when the receiver asks to wait. */
  constructor(format: ExportFormat, emit: (chunk: Buffer) => boolean) {
    this.emit = emit
    this.headerPending = format === 'csv'
    this.json = format === 'json'
  }

  /** Adds one row as COPY sent it (ending in a newline); false when the sink asks to wait. */
  add(row: Buffer): boolean {
    if (this.headerPending) {
      this.headerPending = false
      return this.append(row)
    }
    this.rows++
    if (!this.json) return this.append(row)
    // `[` before the first element, `,` between elements; each element keeps its line.
    const ready = this.append(this.rows === 1 ? OPEN_ARRAY : SEPARATOR)
    return this.append(row.subarray(0, row.length - 1)) && ready
  }

  /** Ends the output (closing the JSON array) and hands out what is left. */
  end(): boolean {
    if (this.json) this.append(this.rows === 0 ? EMPTY_ARRAY : CLOSE_ARRAY)
    return this.flush()
  }

  private append(bytes: Buffer): boolean {
    let ready = true
    if (this.length + bytes.length > CHUNK_BYTES) ready = this.flush()
    if (bytes.length > CHUNK_BYTES) {
      this.bytes += bytes.length
      return this.emit(Buffer.from(bytes)) && ready
    }
    bytes.copy(this.buffer, this.length)
    this.length += bytes.length
    return ready
  }

  private flush(): boolean {
    if (this.length === 0) return true
    const chunk = this.buffer.subarray(0, this.length)
    this.bytes += this.length
    this.buffer = Buffer.allocUnsafe(CHUNK_BYTES)
    this.length = 0
    return this.emit(chunk)
  }
}

const OPEN_ARRAY = Buffer.from('[\n')
const SEPARATOR = Buffer.from(',\n')
const CLOSE_ARRAY = Buffer.from('\n]\n')
const EMPTY_ARRAY = Buffer.from('[]\n')

export interface CopyExportOptions {
  format: ExportFormat
  /**
   * A pool other than the export's, to cancel the statement with pg_cancel_backend when the
   * export is abandoned (postgres.js cannot cancel a COPY whose stream it has handed out).
   */
  control: Sql
  /**
   * Called once PostgreSQL has accepted the statement, before the first row (errors until then
   * are thrown, not streamed), with the export's running counts.
   */
  onStart?: (progress: { readonly rows: number; readonly bytes: number }) => void
  /** Aborting stops the export (the statement is cancelled) and rejects with ExportAborted. */
  signal?: AbortSignal
}

/**
 * Runs an export's COPY statement in one read-only REPEATABLE READ transaction (one snapshot)
 * and writes its bytes to `sink`, honouring the sink's back-pressure. The sink is not ended.
 * When the sink closes early or `signal` aborts, the statement is cancelled and the connection
 * returns to its pool at once. Resolves with the rows and bytes written.
 */
export async function copyExport(
  sql: Sql,
  statement: string,
  sink: Writable,
  options: CopyExportOptions,
): Promise<{ rows: number; bytes: number }> {
  return sql.begin('isolation level repeatable read read only', (transaction) =>
    copyInTransaction(transaction, statement, sink, options),
  )
}

async function copyInTransaction(
  transaction: TransactionSql,
  statement: string,
  sink: Writable,
  options: CopyExportOptions,
): Promise<{ rows: number; bytes: number }> {
  // The statement's literals rely on standard strings; timestamps are written in UTC, in ISO
  // form (whatever the server's defaults), and a table scanned by another query at the same
  // time is still read from its start (the order of an unchanged table's rows stays put).
  const [session] = await transaction<{ pid: number }[]>`
    select set_config('standard_conforming_strings', 'on', true), set_config('timezone', 'UTC', true),
      set_config('datestyle', 'ISO, YMD', true), set_config('synchronize_seqscans', 'off', true),
      pg_backend_pid() as pid`
  const query = transaction.unsafe(statement)
  const copy = await query.readable()
  const framer = new RowFramer(options.format, (chunk) => sink.write(chunk))
  options.onStart?.(framer)
  return new Promise<{ rows: number; bytes: number }>((resolve, reject) => {
    let ended = false
    const resume = () => copy.resume()
    const onRow = (row: Buffer) => {
      if (!framer.add(row)) copy.pause()
    }
    const onEnd = () => {
      framer.end()
      settle()
    }
    const onCopyError = (error: Error) => settle(error)
    const settle = (error?: Error) => {
      if (ended) return
      ended = true
      sink.off('drain', resume)
      sink.off('close', onSinkClose)
      sink.off('error', onSinkError)
      options.signal?.removeEventListener('abort', onAbort)
      if (error) reject(error)
      else resolve({ rows: framer.rows, bytes: framer.bytes })
    }
    // A stream that is dropped while PostgreSQL still sends would leave the connection paused
    // mid-COPY for ever: cancel the statement and drain what is already on its way. The
    // transaction can roll back only once the COPY is over (ended, or failed on the cancel),
    // and the connection may go back to its pool only once the cancel has been delivered (a
    // late one must not hit the next user of the connection).
    let abandoned = false
    const abandon = (reason: string) => {
      if (ended || abandoned) return
      abandoned = true
      const aborted = new ExportAborted(reason)
      // The cancel ends the COPY with an error: expected, and not the export's outcome, unless
      // the connection was lost meanwhile.
      let lost: Error | undefined
      const cancelled = options.control`select pg_cancel_backend(${session?.pid ?? 0})`.catch(() => {})
      const copyClosed = new Promise<void>((closed) => {
        copy.off('data', onRow)
        copy.off('end', onEnd)
        copy.off('error', onCopyError)
        copy.on('error', (error) => {
          if (isDatabaseUnavailable(error)) lost = error
        })
        copy.on('data', () => {})
        copy.once('close', closed)
        copy.resume()
        if (copy.closed) closed()
      })
      void Promise.all([cancelled, copyClosed]).then(() => settle(lost ?? aborted))
    }
    const onSinkClose = () => abandon('the receiver closed before the export ended')
    const onSinkError = (error: Error) => abandon(`the receiver failed: ${error.message}`)
    const onAbort = () => abandon('the export was stopped')
    copy.on('data', onRow)
    copy.on('end', onEnd)
    copy.on('error', onCopyError)
    sink.on('drain', resume)
    sink.on('close', onSinkClose)
    sink.on('error', onSinkError)
    // The receiver may have gone while the statement was being started: it would never drain.
    if (sink.destroyed) onSinkClose()
    else if (options.signal?.aborted) onAbort()
    else options.signal?.addEventListener('abort', onAbort, { once: true })
  })
}
