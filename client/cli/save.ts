import { createWriteStream } from 'node:fs'
import { rename, rm } from 'node:fs/promises'
import { Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { CliError } from './output.ts'

// A response body saved where the user asked: a file (written as `<file>.part` and renamed once
// complete, so that a cut transfer never looks like a finished file) or stdout (at the pace its
// reader takes it; a reader that stops early, like `| head`, ends the transfer quietly).

export interface SaveResult {
  bytes: number
  /** True when stdout's reader closed before the end (EPIPE): not an error. */
  closedEarly: boolean
}

export async function saveBody(
  body: ReadableStream<Uint8Array> | null,
  output: string | undefined,
  onChunk?: (chunk: Uint8Array) => void,
): Promise<SaveResult> {
  if (!body) throw new CliError('the service sent no body')
  let bytes = 0
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.byteLength
      onChunk?.(chunk)
      callback(null, chunk)
    },
  })
  const source = Readable.fromWeb(body as import('node:stream/web').ReadableStream<Uint8Array>)
  if (output === undefined || output === '-') {
    try {
      await pipeline(source, counter, process.stdout, { end: false })
      return { bytes, closedEarly: false }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EPIPE') return { bytes, closedEarly: true }
      throw transferError(error)
    }
  }
  const partial = `${output}.part`
  try {
    await pipeline(source, counter, createWriteStream(partial))
    await rename(partial, output)
    return { bytes, closedEarly: false }
  } catch (error) {
    await rm(partial, { force: true })
    throw transferError(error)
  }
}

function transferError(error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException).code
  if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR') {
    return new CliError(`cannot write the file: ${(error as Error).message}`)
  }
  if (error instanceof CliError) return error
  return new CliError(`the transfer was cut short: ${(error as Error).message}`)
}
