import type { Readable } from 'node:stream'

// Where the service keeps files: uploads and downloaded import sources, and finished exports.
// Two implementations behind one interface: a directory (file-store.ts, STORAGE=fs) and a bucket
// of S3 or an S3-compatible store (s3-store.ts, STORAGE=s3). Jobs, routes and the sweeper only
// know keys; which instance wrote an object does not matter to the one that reads it.

/** What an object is. */
export interface StoredObject {
  size: number
  /** When it was written. */
  modified: Date
}

export interface WriteOptions {
  contentType?: string
  /** Stops the write; the partial object is removed (an S3 multipart upload is aborted). */
  signal?: AbortSignal
  /** Checked on the way: a byte beyond it fails the write with `tooLarge()`. */
  limit?: { maxBytes: number; tooLarge: () => Error }
  /** Hears the bytes taken so far, after each chunk. */
  progress?: (bytes: number) => void
}

/** A write's result: the bytes stored and their SHA-256, computed on the way. */
export interface Written {
  size: number
  sha256: string
}

/** A read of bytes `start` to `end` (inclusive; to the end of the object when absent). */
export interface ByteRange {
  start: number
  end?: number
}

/** An operation of a store, as the metrics name it. */
export type StoreOperation = 'write' | 'read' | 'stat' | 'delete' | 'list' | 'presign' | 'multipart'

/** What a store reports of each operation (the store metrics). */
export type StoreObserver = (
  operation: StoreOperation,
  seconds: number,
  outcome: 'ok' | StoreErrorKind,
  bytes?: number,
) => void

export interface ObjectStore {
  readonly kind: 'fs' | 's3'
  /** Where a key is, for logs and problems: a path, or s3://bucket/key. */
  locate(key: string): string
  /**
   * How a job's row names the object (import_jobs.source_path): the key in a bucket; a file's
   * absolute path in a directory, as before object storage (instances that share a volume at
   * the same path, whatever their IMPORT_DIR says, find it).
   */
  reference(key: string): string
  /**
   * Streams `body` into `key`; the object appears whole or not at all (a file is renamed into
   * place once flushed; a multipart upload is completed). Nothing is held in memory but a part.
   */
  write(key: string, body: Readable, options?: WriteOptions): Promise<Written>
  /**
   * The object's bytes, or a range of them. A read that breaks off (a connection reset, a
   * store restarting) goes on from the byte it reached, S3_MAX_ATTEMPTS times; then the stream
   * fails with a StoreError.
   */
  read(key: string, range?: ByteRange): Promise<Readable>
  /** The object, or undefined when there is none. */
  stat(key: string): Promise<StoredObject | undefined>
  /** Removes the object; one that does not exist is not an error. */
  delete(key: string): Promise<void>
  /** Every object under the store's prefix (keys relative to it). */
  list(): AsyncIterable<{ key: string } & StoredObject>
  /** Removes what unfinished writes of `key` left (a dead owner's partial file or multipart upload). */
  abandon(key: string): Promise<void>
  /** Removes what unfinished writes left (partial files, multipart uploads) older than `before`. */
  sweepUnfinished(before: Date): Promise<number>
  /** Writes, reads and deletes a probe object: the start-up check and /ready. */
  check(): Promise<void>
}

/** A job handed back because the store was away is claimed again after this. */
export const STORE_RETRY_MS = 5_000

export type StoreErrorKind = 'not_found' | 'no_bucket' | 'denied' | 'unavailable' | 'failed'

/**
 * A store operation that failed, by kind: `not_found` (no such object), `no_bucket`, `denied`
 * (credentials or permissions), `unavailable` (the store did not answer, or answered 5xx, after
 * its retries: worth trying later), `failed` (anything else).
 */
export class StoreError extends Error {
  readonly kind: StoreErrorKind

  constructor(kind: StoreErrorKind, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'StoreError'
    this.kind = kind
  }
}

export function isStoreUnavailable(error: unknown): boolean {
  return error instanceof StoreError && error.kind === 'unavailable'
}
