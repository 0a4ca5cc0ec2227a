import { randomUUID } from 'node:crypto'
import { PassThrough, Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { DigestStream } from '../jobs/digest-stream.ts'
import {
  type ByteRange,
  type ObjectStore,
  type StoredObject,
  StoreError,
  type StoreErrorKind,
  type StoreObserver,
  type WriteOptions,
  type Written,
} from './object-store.ts'

/** How the service reaches its bucket (the S3_* settings; credentials come from the AWS chain). */
export interface S3Settings {
  endpoint: string
  region: string
  bucket: string
  /** S3_PREFIX plus the area (imports/ or exports/). */
  prefix: string
  forcePathStyle: boolean
  checksums: 'when_required' | 'when_supported'
  partBytes: number
  maxAttempts: number
}

/** The client of one bucket's settings; the SDK retries a request maxAttempts times, backing off. */
export function s3Client(settings: Omit<S3Settings, 'bucket' | 'prefix' | 'partBytes'>): S3Client {
  const checksums = settings.checksums === 'when_supported' ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED'
  return new S3Client({
    region: settings.region,
    ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
    forcePathStyle: settings.forcePathStyle,
    maxAttempts: settings.maxAttempts,
    // Stores that refuse the SDK's newer checksum encodings (Swift, older MinIO) work with
    // WHEN_REQUIRED: no aws-chunked bodies with trailing checksums.
    requestChecksumCalculation: checksums,
    responseChecksumValidation: checksums,
    // A store that stops answering fails the request instead of holding it for ever.
    requestHandler: { connectionTimeout: 5_000, requestTimeout: 60_000 },
  })
}

const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
])

/** Whether an error of a request or of a body's bytes is worth trying again. */
function transient(error: unknown): boolean {
  const { code, name, $metadata } = error as { code?: string; name?: string; $metadata?: { httpStatusCode?: number } }
  const status = $metadata?.httpStatusCode
  if (status !== undefined) return status >= 500 || status === 429 || status === 408
  if (name === 'TimeoutError' || name === 'AbortError') return name === 'TimeoutError'
  if (code && TRANSIENT_CODES.has(code)) return true
  return /aborted|socket hang up|premature|ECONNRESET|ECONNREFUSED/i.test((error as Error)?.message ?? '')
}

/** An SDK error in the store's words. */
export function s3Error(error: unknown, where: string): StoreError {
  if (error instanceof StoreError) return error
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode
  const name = error instanceof S3ServiceException ? error.name : (error as Error)?.name
  let kind: StoreErrorKind = 'failed'
  if (name === 'NoSuchBucket') kind = 'no_bucket'
  else if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) kind = 'not_found'
  else if (
    status === 403 ||
    name === 'AccessDenied' ||
    name === 'InvalidAccessKeyId' ||
    name === 'SignatureDoesNotMatch'
  )
    kind = 'denied'
  else if (name === 'CredentialsProviderError') kind = 'denied'
  else if (transient(error)) kind = 'unavailable'
  const detail = (error as Error)?.message || name || 'no detail'
  return new StoreError(kind, `${where}: ${name && !detail.includes(name) ? `${name}: ` : ''}${detail}`, {
    cause: error,
  })
}

/**
 * A bucket (and a key prefix in it) as the store (STORAGE=s3). Writes are multipart uploads of
 * S3_PART_BYTES parts, hashed on the way; reads are GETs of byte ranges that go on from where
 * they broke off.
 */
export class S3Store implements ObjectStore {
  readonly kind = 's3' as const
  readonly client: S3Client
  readonly settings: S3Settings
  private readonly observe: StoreObserver

  constructor(client: S3Client, settings: S3Settings, observe: StoreObserver = () => {}) {
    this.client = client
    this.settings = settings
    this.observe = observe
  }

  get bucket(): string {
    return this.settings.bucket
  }

  /** The bucket's key of a store key. */
  objectKey(key: string): string {
    return `${this.settings.prefix}${key}`
  }

  locate(key: string): string {
    return `s3://${this.bucket}/${this.objectKey(key)}`
  }

  reference(key: string): string {
    return key
  }

  /** Runs one request, timing it for the metrics and turning its error into a StoreError. */
  private async request<T>(operation: Parameters<StoreObserver>[0], where: string, run: () => Promise<T>): Promise<T> {
    const started = performance.now()
    try {
      const result = await run()
      this.observe(operation, (performance.now() - started) / 1000, 'ok')
      return result
    } catch (error) {
      const failure = s3Error(error, where)
      this.observe(operation, (performance.now() - started) / 1000, failure.kind)
      throw failure
    }
  }

  async write(key: string, body: Readable, options: WriteOptions = {}): Promise<Written> {
    const digest = new DigestStream(options.limit, options.progress)
    const through = new PassThrough({ highWaterMark: 1024 * 1024 })
    const upload = new Upload({
      client: this.client,
      params: {
        Bucket: this.bucket,
        Key: this.objectKey(key),
        Body: through,
        ContentType: options.contentType,
        ...(this.settings.checksums === 'when_supported' ? { ChecksumAlgorithm: 'SHA256' as const } : {}),
      },
      partSize: this.settings.partBytes,
      queueSize: 2,
      leavePartsOnError: false,
    })
    const started = performance.now()
    try {
      // The upload reads what the pipeline passes. A pipeline that fails (the body breaks, the
      // signal aborts) destroys `through` with its error: the upload then fails too, and aborts
      // its multipart upload before it settles, so that nothing is left once this rejects.
      const uploaded = upload.done()
      // An upload that fails first (the store away) reads no more: the pipeline must not wait on it.
      uploaded.catch((error: Error) => through.destroy(error))
      try {
        await pipeline(body, digest, through, { signal: options.signal })
      } catch (error) {
        through.destroy(error as Error)
        // The store's own failure, when it came first, says more than the pipeline's abort.
        throw (
          (await uploaded.then(
            () => undefined,
            (failure: unknown) => failure,
          )) ?? error
        )
      }
      await uploaded
      // Verified: the store holds as many bytes as were hashed.
      const stored = await this.stat(key)
      if (stored?.size !== digest.bytes) {
        throw new StoreError(
          'failed',
          `${this.locate(key)} holds ${stored?.size ?? 'no'} bytes after an upload of ${digest.bytes}`,
        )
      }
      this.observe('write', (performance.now() - started) / 1000, 'ok', digest.bytes)
      return { size: digest.bytes, sha256: digest.sha256() }
    } catch (error) {
      const failure = error instanceof StoreError || !isSdkError(error) ? error : s3Error(error, this.locate(key))
      this.observe(
        'write',
        (performance.now() - started) / 1000,
        failure instanceof StoreError ? failure.kind : 'failed',
      )
      throw failure
    }
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    const reader = new RangeReader(this, key, range?.start ?? 0, range?.end)
    await reader.opened
    return reader
  }

  /** One GET of the bytes from `start` (to `end`); the body and how many bytes it has. */
  async get(key: string, start: number, end: number | undefined): Promise<{ body: Readable; length: number }> {
    const rangeHeader = start > 0 || end !== undefined ? `bytes=${start}-${end ?? ''}` : undefined
    try {
      const response = await this.request('read', this.locate(key), () =>
        this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), Range: rangeHeader })),
      )
      return { body: response.Body as Readable, length: response.ContentLength ?? 0 }
    } catch (error) {
      // A range that starts at or past the end (any range of an empty object) is no bytes, as a
      // file read there is: S3 answers 416.
      const status = ((error as StoreError).cause as { $metadata?: { httpStatusCode?: number } })?.$metadata
        ?.httpStatusCode
      if (rangeHeader && status === 416) return { body: Readable.from([]), length: 0 }
      throw error
    }
  }

  /** Counts bytes read for the metrics. */
  readBytes(bytes: number): void {
    this.observe('read', 0, 'ok', bytes)
  }

  async stat(key: string): Promise<StoredObject | undefined> {
    try {
      const head = await this.request('stat', this.locate(key), () =>
        this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) })),
      )
      return { size: head.ContentLength ?? 0, modified: head.LastModified ?? new Date(0) }
    } catch (error) {
      if (error instanceof StoreError && error.kind === 'not_found') return undefined
      throw error
    }
  }

  async delete(key: string): Promise<void> {
    await this.request('delete', this.locate(key), () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) })),
    )
  }

  async *list(): AsyncIterable<{ key: string } & StoredObject> {
    let token: string | undefined
    do {
      const page = await this.request('list', `s3://${this.bucket}/${this.settings.prefix}`, () =>
        this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.settings.prefix, ContinuationToken: token }),
        ),
      )
      for (const object of page.Contents ?? []) {
        if (!object.Key) continue
        yield {
          key: object.Key.slice(this.settings.prefix.length),
          size: object.Size ?? 0,
          modified: object.LastModified ?? new Date(0),
        }
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (token)
  }

  async abandon(key: string): Promise<void> {
    // Uploads of this very key (the prefix may match longer keys too: they are left alone).
    const page = await this.request('multipart', this.locate(key), () =>
      this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.objectKey(key) })),
    )
    for (const upload of page.Uploads ?? []) {
      if (upload.Key === this.objectKey(key) && upload.UploadId) await this.abortMultipart(key, upload.UploadId)
    }
  }

  async sweepUnfinished(before: Date): Promise<number> {
    let removed = 0
    let keyMarker: string | undefined
    let uploadIdMarker: string | undefined
    do {
      const page = await this.request('multipart', `s3://${this.bucket}/${this.settings.prefix}`, () =>
        this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            Prefix: this.settings.prefix,
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
        ),
      )
      for (const upload of page.Uploads ?? []) {
        if (!upload.Key || !upload.UploadId || !upload.Initiated || upload.Initiated >= before) continue
        // Listed under the prefix: its store key is what follows it.
        await this.abortMultipart(upload.Key.slice(this.settings.prefix.length), upload.UploadId)
        removed++
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined
    } while (keyMarker)
    return removed
  }

  async check(): Promise<void> {
    const key = `.probe-${randomUUID()}`
    const where = this.locate(key)
    await this.request('write', where, () =>
      this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), Body: 'probe' })),
    )
    try {
      const { body } = await this.get(key, 0, undefined)
      const text = Buffer.concat(await body.toArray()).toString()
      if (text !== 'probe') throw new StoreError('failed', `${where} reads back as something else than was written`)
    } finally {
      await this.delete(key)
    }
  }

  /** A presigned GET of the object, answered with these response headers. */
  async presignGet(
    key: string,
    options: { expiresIn: number; contentDisposition?: string; contentType?: string },
  ): Promise<string> {
    return this.request('presign', this.locate(key), () =>
      getSignedUrl(
        this.client,
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.objectKey(key),
          ResponseContentDisposition: options.contentDisposition,
          ResponseContentType: options.contentType,
        }),
        { expiresIn: options.expiresIn },
      ),
    )
  }

  /** A presigned PUT of a whole object. */
  async presignPut(key: string, expiresIn: number): Promise<string> {
    return this.request('presign', this.locate(key), () =>
      getSignedUrl(this.client, new PutObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }), {
        expiresIn,
      }),
    )
  }

  /** Starts a multipart upload; its id. */
  async createMultipart(key: string): Promise<string> {
    const created = await this.request('multipart', this.locate(key), () =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.objectKey(key) })),
    )
    if (!created.UploadId) throw new StoreError('failed', `${this.locate(key)}: the store gave no upload id`)
    return created.UploadId
  }

  /** A presigned PUT of one part of a multipart upload. */
  async presignPart(key: string, uploadId: string, partNumber: number, expiresIn: number): Promise<string> {
    return this.request('presign', this.locate(key), () =>
      getSignedUrl(
        this.client,
        new UploadPartCommand({
          Bucket: this.bucket,
          Key: this.objectKey(key),
          UploadId: uploadId,
          PartNumber: partNumber,
        }),
        { expiresIn },
      ),
    )
  }

  async completeMultipart(key: string, uploadId: string, parts: CompletedPart[]): Promise<void> {
    await this.request('multipart', this.locate(key), () =>
      this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: this.objectKey(key),
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
        }),
      ),
    )
  }

  async abortMultipart(key: string, uploadId: string): Promise<void> {
    await this.request('multipart', this.locate(key), () =>
      this.client.send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.objectKey(key), UploadId: uploadId }),
      ),
    )
  }
}

function isSdkError(error: unknown): boolean {
  return error instanceof S3ServiceException || (error as { $metadata?: unknown })?.$metadata !== undefined
}

/** A body's chunks (~64 KiB) are passed on in pieces of about this size: fewer, cheaper turns downstream. */
const PASS_BYTES = 1024 * 1024

/**
 * The bytes of an object from `start` (to `end`), as one stream over as many GETs as it takes: a
 * body that breaks off (or ends short of the length its response announced) is followed by a GET
 * of the rest, after a back-off, up to S3_MAX_ATTEMPTS times in a row.
 */
class RangeReader extends Readable {
  /** Settles once the first GET answered (rejects with its StoreError). */
  readonly opened: Promise<void>
  private readonly store: S3Store
  private readonly key: string
  private offset: number
  private readonly end: number | undefined
  private body: Readable | undefined
  private expectedEnd = 0
  private failures = 0
  private retryTimer: NodeJS.Timeout | undefined
  /** Bytes received and not yet passed on (a body's chunks are small: they go on in larger ones). */
  private pending: Buffer[] = []
  private pendingBytes = 0
  private settleOpened: { resolve: () => void; reject: (error: Error) => void } | undefined

  constructor(store: S3Store, key: string, start: number, end: number | undefined) {
    super({ highWaterMark: 256 * 1024 })
    this.store = store
    this.key = key
    this.offset = start
    this.end = end
    this.opened = new Promise((resolve, reject) => {
      this.settleOpened = { resolve, reject }
    })
    this.opened.catch(() => {})
    this.open()
  }

  override _read(): void {
    this.body?.resume()
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    clearTimeout(this.retryTimer)
    this.body?.destroy()
    this.body = undefined
    done(error)
  }

  private open(): void {
    this.store.get(this.key, this.offset, this.end).then(
      ({ body, length }) => {
        if (this.destroyed) {
          body.destroy()
          return
        }
        this.body = body
        this.expectedEnd = this.offset + length
        this.settleOpened?.resolve()
        this.settleOpened = undefined
        body.on('data', (chunk: Buffer) => {
          this.offset += chunk.length
          this.failures = 0
          this.store.readBytes(chunk.length)
          this.pending.push(chunk)
          this.pendingBytes += chunk.length
          if (this.pendingBytes >= PASS_BYTES && !this.flush()) body.pause()
        })
        body.once('end', () => {
          if (this.body !== body) return
          if (this.offset < this.expectedEnd) this.broke(new Error(`premature end of the body at byte ${this.offset}`))
          else {
            this.flush()
            this.push(null)
          }
        })
        body.once('error', (error) => {
          if (this.body === body) this.broke(error)
        })
      },
      (error: StoreError) => this.fail(error),
    )
  }

  /** Passes on the bytes received so far; false when the reader wants no more for now. */
  private flush(): boolean {
    if (this.pendingBytes === 0) return true
    const chunk =
      this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending, this.pendingBytes)
    this.pending = []
    this.pendingBytes = 0
    return this.push(chunk)
  }

  /** The body broke off: a GET of the rest, or the end of the stream. */
  private broke(error: unknown): void {
    this.flush() // what arrived before the break stands: the next GET starts after it
    this.body?.removeAllListeners()
    this.body?.destroy()
    this.body = undefined
    if (this.destroyed) return
    if (!transient(error) || ++this.failures >= this.store.settings.maxAttempts) {
      this.fail(s3Error(error, `${this.store.locate(this.key)} (reading at byte ${this.offset})`))
      return
    }
    const delay = Math.min(5_000, 100 * 2 ** this.failures) * (0.5 + Math.random() / 2)
    this.retryTimer = setTimeout(() => this.open(), delay)
  }

  private fail(error: StoreError): void {
    if (this.settleOpened) {
      this.settleOpened.reject(error)
      this.settleOpened = undefined
      this.destroy()
      return
    }
    // The request itself was retried by the SDK; a store still away after them ends the read.
    this.destroy(error)
  }
}
