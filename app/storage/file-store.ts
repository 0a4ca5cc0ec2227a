import { randomUUID } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { DigestStream } from '../jobs/digest-stream.ts'
import {
  type ByteRange,
  type ObjectStore,
  type StoredObject,
  StoreError,
  type WriteOptions,
  type Written,
} from './object-store.ts'

/** Files being written end so; they are renamed to their key once complete. */
const PARTIAL = '.partial'

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
/**
 * The names the service gives its files (uploads, downloaded sources, direct uploads, export
 * files): only these are listed, and swept when no job refers to them. The directories are the
 * operator's choice (IMPORT_DIR=/tmp happens): other files in them are never touched.
 */
const OWN_FILE = new RegExp(`^${UUID}\\.(upload|download|direct|(csv|ndjson|json)(\\.gz)?)$`)
/** Partial files: `<own name>.<uuid>.partial`, and `<uuid>.<attempt>.partial` of older versions. */
const OWN_PARTIAL = new RegExp(
  `^(${UUID}\\.(upload|download|direct|(csv|ndjson|json)(\\.gz)?)\\.${UUID}|${UUID}\\.\\d+)\\.partial$`,
)

function storeError(error: unknown, where: string): StoreError {
  const code = (error as NodeJS.ErrnoException).code
  if (code === 'ENOENT') return new StoreError('not_found', `${where} does not exist`, { cause: error })
  if (code === 'EACCES' || code === 'EPERM') {
    return new StoreError('denied', `${where} cannot be accessed (${code})`, { cause: error })
  }
  return new StoreError('failed', `${where}: ${(error as Error).message}`, { cause: error })
}

/**
 * A directory as the store (STORAGE=fs): a key is a file name in it. Older jobs stored absolute
 * paths; they resolve to themselves.
 */
export class FileStore implements ObjectStore {
  readonly kind = 'fs' as const
  readonly directory: string

  constructor(directory: string) {
    this.directory = path.resolve(directory)
  }

  locate(key: string): string {
    return path.resolve(this.directory, key)
  }

  reference(key: string): string {
    return this.locate(key)
  }

  async write(key: string, body: Readable, options: WriteOptions = {}): Promise<Written> {
    const target = this.locate(key)
    const partial = `${target}.${randomUUID()}${PARTIAL}`
    const digest = new DigestStream(options.limit, options.progress)
    try {
      // `flush` fsyncs the file before it closes: the rename never publishes a partial file.
      await pipeline(body, digest, createWriteStream(partial, { flush: true }), { signal: options.signal })
      await rename(partial, target)
    } catch (error) {
      await rm(partial, { force: true })
      throw error
    }
    return { size: digest.bytes, sha256: digest.sha256() }
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    const file = this.locate(key)
    // Opened before it is returned, so that a missing file is this call's error.
    const stream = createReadStream(file, { start: range?.start, end: range?.end, highWaterMark: 256 * 1024 })
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve())
      stream.once('error', (error) => reject(storeError(error, file)))
    })
    return stream
  }

  async stat(key: string): Promise<StoredObject | undefined> {
    try {
      const stats = await stat(this.locate(key))
      return { size: stats.size, modified: stats.mtime }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw storeError(error, this.locate(key))
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.locate(key), { force: true })
  }

  async *list(): AsyncIterable<{ key: string } & StoredObject> {
    for (const entry of await readdir(this.directory, { withFileTypes: true })) {
      if (!entry.isFile() || !OWN_FILE.test(entry.name)) continue
      const stats = await stat(path.join(this.directory, entry.name)).catch(() => undefined)
      if (stats) yield { key: entry.name, size: stats.size, modified: stats.mtime }
    }
  }

  async abandon(key: string): Promise<void> {
    const target = path.basename(this.locate(key))
    const partial = new RegExp(`^${target.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.${UUID}\\.partial$`)
    for (const name of await readdir(path.dirname(this.locate(key)))) {
      if (partial.test(name)) await rm(path.join(path.dirname(this.locate(key)), name), { force: true })
    }
  }

  async sweepUnfinished(before: Date): Promise<number> {
    let removed = 0
    for (const entry of await readdir(this.directory, { withFileTypes: true })) {
      if (!entry.isFile() || !OWN_PARTIAL.test(entry.name)) continue
      const file = path.join(this.directory, entry.name)
      const stats = await stat(file).catch(() => undefined)
      if (stats && stats.mtime < before) {
        await rm(file, { force: true })
        removed++
      }
    }
    return removed
  }

  async check(): Promise<void> {
    const probe = this.locate(`.probe-${randomUUID()}`)
    try {
      await mkdir(this.directory, { recursive: true })
      await writeFile(probe, 'probe')
      if ((await readFile(probe, 'utf8')) !== 'probe') throw new Error('a probe file read back differs')
    } catch (error) {
      throw storeError(error, this.directory)
    } finally {
      await rm(probe, { force: true })
    }
  }
}
