import { createHash, type Hash } from 'node:crypto'
import { Transform, type TransformCallback } from 'node:stream'

/**
 * Passes bytes through while counting them and computing their SHA-256: the files jobs read
 * (uploads, downloads) and write (exports) are measured on their way to disk, never read twice.
 * With a limit, a byte beyond `maxBytes` fails the stream with `tooLarge()`.
 */
export class DigestStream extends Transform {
  /** Bytes passed so far. */
  bytes = 0
  private readonly hash: Hash = createHash('sha256')
  private readonly limit: { maxBytes: number; tooLarge: () => Error } | undefined
  private readonly progress: ((bytes: number) => void) | undefined

  /** `progress` hears the bytes passed so far after each chunk. */
  constructor(limit?: { maxBytes: number; tooLarge: () => Error }, progress?: (bytes: number) => void) {
    super()
    this.limit = limit
    this.progress = progress
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length
    this.progress?.(this.bytes)
    if (this.limit && this.bytes > this.limit.maxBytes) {
      done(this.limit.tooLarge())
      return
    }
    this.hash.update(chunk)
    done(null, chunk)
  }

  /** The SHA-256 of every byte passed, in hex; call it once, after the stream ended. */
  sha256(): string {
    return this.hash.digest('hex')
  }
}
