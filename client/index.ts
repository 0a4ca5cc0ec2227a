import createFetchClient, { type Client } from 'openapi-fetch'
import type { components, operations, paths } from './openapi.ts'

// The typed client of the bulk-io API. Every request and response type comes from openapi.ts,
// which is generated from the service's openapi.yaml (`make generate`); openapi-fetch sends the
// requests. The helpers below cover what a generic client does not: a multipart upload, a direct
// upload into the object store, the server-sent progress events of an import, and a streamed export.

export type { components, operations, paths }
export type ImportJob = components['schemas']['ImportJob']
export type ExportJob = components['schemas']['ExportJob']
export type Problem = components['schemas']['Problem']
export type Upload = components['schemas']['Upload']
export type Resource = 'users' | 'articles' | 'comments'
export type Format = 'csv' | 'ndjson' | 'json'

export interface ClientOptions {
  /** The service's base URL, e.g. http://127.0.0.1:8080 */
  baseUrl: string
  /** An API key (the service's API_KEYS), sent as `Authorization: Bearer <key>`. */
  apiKey?: string
  /** Another fetch (tests, proxies). */
  fetch?: typeof fetch
}

export type BulkIoClient = Client<paths> & { readonly options: ClientOptions }

/** A client of one service. */
export function createClient(options: ClientOptions): BulkIoClient {
  const client = createFetchClient<paths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ''),
    headers: options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {},
    ...(options.fetch ? { fetch: options.fetch } : {}),
  })
  return Object.assign(client, { options })
}

/** An error answer of the service: its RFC 9457 problem. */
export class ProblemError extends Error {
  readonly problem: Problem
  constructor(problem: Problem) {
    super(`${problem.status} ${problem.title}${problem.detail ? `: ${problem.detail}` : ''}`)
    this.name = 'ProblemError'
    this.problem = problem
  }
}

/** The data of an openapi-fetch result, or its problem thrown as a ProblemError. */
export function dataOf<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.error !== undefined || result.data === undefined) {
    const error = result.error as Partial<Problem> | undefined
    throw new ProblemError({
      type: error?.type ?? 'about:blank',
      title: error?.title ?? result.response.statusText,
      status: error?.status ?? result.response.status,
      ...error,
    } as Problem)
  }
  return result.data
}

export interface UploadOptions {
  resource: Resource
  /** The file's bytes (a Blob keeps large files out of memory when it comes from `fs.openAsBlob`). */
  file: Blob
  filename: string
  format?: Format
  dryRun?: boolean
  idempotencyKey?: string
  /** Called as the request body goes out: bytes of the file sent so far, and its size. */
  onProgress?: (sent: number, total: number) => void
  signal?: AbortSignal
}

/**
 * Starts an import from a file (multipart upload): the queued job. The body is streamed from the
 * Blob, the fields before the file part, so nothing of the file is held in memory.
 */
export async function uploadImport(client: BulkIoClient, upload: UploadOptions): Promise<ImportJob> {
  const boundary = `bulk-io-${crypto.randomUUID()}`
  const encoder = new TextEncoder()
  const field = (name: string, value: string) =>
    `--${boundary}\r\ncontent-disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`
  let head = field('resource', upload.resource)
  if (upload.format) head += field('format', upload.format)
  if (upload.dryRun !== undefined) head += field('dry_run', String(upload.dryRun))
  head +=
    `--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="${formFileName(upload.filename)}"\r\n` +
    'content-type: application/octet-stream\r\n\r\n'
  const total = upload.file.size
  let sent = 0
  let file: ReadableStreamDefaultReader<Uint8Array> | undefined
  // One chunk of the file per pull: the upload goes at the pace the connection takes it.
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode(head))
      file = upload.file.stream().getReader()
    },
    async pull(controller) {
      const { done, value } = await (file as ReadableStreamDefaultReader<Uint8Array>).read()
      if (done) {
        controller.enqueue(encoder.encode(`\r\n--${boundary}--\r\n`))
        controller.close()
        return
      }
      sent += value.byteLength
      upload.onProgress?.(sent, total)
      controller.enqueue(value)
    },
    async cancel(reason) {
      await file?.cancel(reason)
    },
  })
  const result = await client.POST('/api/v1/imports', {
    // The generated type describes the form's fields; the body sent is the multipart stream itself.
    body: body as never,
    bodySerializer: (stream: unknown) => stream as ReadableStream,
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    params: { header: upload.idempotencyKey ? { 'idempotency-key': upload.idempotencyKey } : {} } as never,
    duplex: 'half',
    signal: upload.signal,
  } as never)
  return dataOf(result) as ImportJob
}

/** A file name as a multipart header carries it (quotes and line breaks percent-encoded, as browsers do). */
function formFileName(name: string): string {
  return name.replace(/"/g, '%22').replace(/\r/g, '%0D').replace(/\n/g, '%0A')
}

export interface UrlImportOptions {
  resource: Resource
  /** An http(s) URL the service downloads. */
  url: string
  format?: Format
  dryRun?: boolean
  idempotencyKey?: string
}

/** Starts an import of a file the service downloads from a URL: the queued job. */
export async function urlImport(client: BulkIoClient, options: UrlImportOptions): Promise<ImportJob> {
  const result = await client.POST('/api/v1/imports', {
    body: {
      resource: options.resource,
      url: options.url,
      ...(options.format ? { format: options.format } : {}),
      ...(options.dryRun !== undefined ? { dry_run: options.dryRun } : {}),
    } as never,
    params: { header: options.idempotencyKey ? { 'idempotency-key': options.idempotencyKey } : {} } as never,
  })
  return dataOf(result) as ImportJob
}

export interface CreateUploadOptions {
  /** The file's size in bytes. */
  sizeBytes: number
  /** Its name: the extension may give the format. */
  filename?: string
  contentType?: string
  signal?: AbortSignal
}

/**
 * Starts a direct upload (POST /api/v1/uploads): the pending upload with its presigned URL(s). A
 * service that keeps its files in directories (STORAGE=fs) answers 409: a ProblemError.
 */
export async function createUpload(client: BulkIoClient, options: CreateUploadOptions): Promise<Upload> {
  const result = await client.POST('/api/v1/uploads', {
    body: {
      size_bytes: options.sizeBytes,
      ...(options.filename ? { filename: options.filename } : {}),
      ...(options.contentType ? { content_type: options.contentType } : {}),
    },
    signal: options.signal,
  })
  return dataOf(result)
}

/** Aborts a pending direct upload (DELETE /api/v1/uploads/{id}): the store deletes its parts. */
export async function abortUpload(client: BulkIoClient, id: string, signal?: AbortSignal): Promise<void> {
  const result = await client.DELETE('/api/v1/uploads/{id}', { params: { path: { id } }, signal })
  if (!result.response.ok) dataOf(result)
}

/** Progress of a direct upload: bytes handed to the store so far, and parts finished. */
export interface DirectUploadProgress {
  sent: number
  total: number
  partsDone: number
  parts: number
}

export interface SendUploadOptions {
  /** The file (from `fs.openAsBlob`, each part is read from the disk as it goes: nothing is held whole). */
  file: Blob
  /** Parts sent at once (4). */
  concurrency?: number
  /** Tries of each PUT before the upload fails (4): network errors, 5xx, 408 and 429 are tried again, after 0.5, 1, 2 s… */
  attempts?: number
  onProgress?: (progress: DirectUploadProgress) => void
  /** A PUT that failed and is tried again: after try `attempt` of `attempts`, in `delayMs`. */
  onRetry?: (retry: { partNumber: number; attempt: number; attempts: number; delayMs: number; error: Error }) => void
  signal?: AbortSignal
}

/** A PUT to the store that did not succeed. */
export class UploadPartError extends Error {
  /** The store's status; undefined when the request did not get an answer. */
  readonly status: number | undefined
  constructor(message: string, status?: number, options?: ErrorOptions) {
    super(message, options)
    this.name = 'UploadPartError'
    this.status = status
  }
}

/**
 * Sends the file of a pending upload (createUpload) straight to the store: its URL, or its parts
 * a few at a time, each streamed from its byte range of the Blob and tried again when it fails;
 * then completes it (POST complete_url, with the parts' ETags). The completed upload. When
 * anything fails, or `signal` aborts, the upload is aborted (DELETE) before the error is thrown.
 */
export async function sendUpload(client: BulkIoClient, upload: Upload, options: SendUploadOptions): Promise<Upload> {
  const put = client.options.fetch ?? globalThis.fetch
  const file = options.file
  const total = file.size
  if (upload.status !== 'pending') throw new Error(`the upload ${upload.id} is ${upload.status}`)
  if (upload.size_bytes !== total) {
    throw new Error(`the upload ${upload.id} is of ${upload.size_bytes} bytes, the file of ${total}`)
  }
  const single = upload.url !== null
  const partSize = single ? total : (upload.part_size_bytes ?? total)
  const parts = single
    ? [{ part_number: 1, url: upload.url as string }]
    : [...upload.parts].sort((a, b) => a.part_number - b.part_number)
  const attempts = Math.max(1, options.attempts ?? 4)
  // Every part stops once one has failed for good, or the caller aborts.
  const stopping = new AbortController()
  const stop = () => stopping.abort(options.signal?.reason)
  if (options.signal?.aborted) stop()
  options.signal?.addEventListener('abort', stop, { once: true })
  let sent = 0
  let partsDone = 0
  const report = () => options.onProgress?.({ sent, total, partsDone, parts: parts.length })
  const etags: { part_number: number; etag: string }[] = []

  const sendPart = async (part: { part_number: number; url: string }) => {
    const from = (part.part_number - 1) * partSize
    const bytes = file.slice(from, Math.min(from + partSize, total))
    for (let attempt = 1; ; attempt++) {
      let partSent = 0
      try {
        stopping.signal.throwIfAborted()
        const counted = bytes.stream().pipeThrough(
          new TransformStream<Uint8Array, Uint8Array>({
            transform(chunk, controller) {
              partSent += chunk.byteLength
              sent += chunk.byteLength
              report()
              controller.enqueue(chunk)
            },
          }),
        )
        let response: Response
        try {
          response = await put(part.url, {
            method: 'PUT',
            body: counted,
            // A stream has no length of its own; S3 wants one (no chunked PUT).
            headers: { 'content-length': String(bytes.size) },
            duplex: 'half',
            signal: stopping.signal,
          } as RequestInit)
        } catch (error) {
          if (stopping.signal.aborted) throw error
          const cause = (error as { cause?: { code?: string; message?: string } }).cause
          const reason = cause?.message ?? (error as Error).message
          throw new UploadPartError(
            `part ${part.part_number}: the PUT failed: ${reason}${cause?.code ? ` (${cause.code})` : ''}`,
            undefined,
            { cause: error },
          )
        }
        if (!response.ok) {
          const text = await response.text().catch(() => '')
          const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1]
          throw new UploadPartError(
            `part ${part.part_number}: the store answered ${response.status}${code ? ` ${code}` : ` ${response.statusText}`}`,
            response.status,
          )
        }
        await response.body?.cancel().catch(() => {})
        const etag = response.headers.get('etag')
        if (!etag) {
          throw new UploadPartError(
            `part ${part.part_number}: the store's answer has no ETag (a browser needs the bucket's CORS to expose it)`,
            response.status,
          )
        }
        etags.push({ part_number: part.part_number, etag })
        partsDone++
        report()
        return
      } catch (error) {
        // What this try had sent is sent again.
        sent -= partSent
        report()
        if (stopping.signal.aborted || attempt >= attempts || !retryable(error)) throw error
        const delayMs = 500 * 2 ** (attempt - 1) * (0.75 + Math.random() * 0.5)
        options.onRetry?.({ partNumber: part.part_number, attempt, attempts, delayMs, error: error as Error })
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, delayMs)
          function done() {
            clearTimeout(timer)
            stopping.signal.removeEventListener('abort', done)
            resolve()
          }
          stopping.signal.addEventListener('abort', done, { once: true })
        })
      }
    }
  }

  try {
    const queue = [...parts]
    let failure: { error: unknown } | undefined
    const worker = async () => {
      for (let part = queue.shift(); part && !failure; part = queue.shift()) {
        try {
          await sendPart(part)
        } catch (error) {
          // The first failure is the one to tell; the others are its consequence.
          failure ??= { error }
          stopping.abort(error)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(Math.max(1, options.concurrency ?? 4), parts.length) }, worker))
    if (failure) throw options.signal?.aborted ? options.signal.reason : failure.error
    etags.sort((a, b) => a.part_number - b.part_number)
    const result = await client.POST('/api/v1/uploads/{id}/complete', {
      params: { path: { id: upload.id } },
      body: single ? {} : { parts: etags },
      signal: options.signal,
    })
    return dataOf(result)
  } catch (error) {
    // Not under the caller's signal: it may be the reason the upload stops.
    await abortUpload(client, upload.id).catch(() => {})
    throw error
  } finally {
    options.signal?.removeEventListener('abort', stop)
  }
}

/** Whether a PUT that failed may succeed when sent again. */
function retryable(error: unknown): boolean {
  if (!(error instanceof UploadPartError)) return false
  const { status } = error
  return status === undefined || status >= 500 || status === 408 || status === 429
}

export interface DirectUploadOptions extends SendUploadOptions {
  filename?: string
  contentType?: string
}

/** createUpload, then sendUpload: the completed upload, for `directImport`. */
export async function directUpload(client: BulkIoClient, options: DirectUploadOptions): Promise<Upload> {
  const upload = await createUpload(client, {
    sizeBytes: options.file.size,
    filename: options.filename,
    contentType: options.contentType,
    signal: options.signal,
  })
  return sendUpload(client, upload, options)
}

export interface DirectImportOptions {
  resource: Resource
  /** A completed direct upload. */
  uploadId: string
  format?: Format
  dryRun?: boolean
  idempotencyKey?: string
  signal?: AbortSignal
}

/** Starts an import of a completed direct upload (`{resource, upload_id}`): the queued job. */
export async function directImport(client: BulkIoClient, options: DirectImportOptions): Promise<ImportJob> {
  const result = await client.POST('/api/v1/imports', {
    body: {
      resource: options.resource,
      upload_id: options.uploadId,
      ...(options.format ? { format: options.format } : {}),
      ...(options.dryRun !== undefined ? { dry_run: options.dryRun } : {}),
    } as never,
    params: { header: options.idempotencyKey ? { 'idempotency-key': options.idempotencyKey } : {} } as never,
    signal: options.signal,
  })
  return dataOf(result) as ImportJob
}

/** One server-sent event of an import: its job as it is now (`progress`), or its final state (`done`). */
export interface ImportEvent {
  event: 'progress' | 'done'
  job: ImportJob
}

/** The progress events of an import until it is done (GET /api/v1/imports/{id}/events). */
export async function* importEvents(
  client: BulkIoClient,
  id: string,
  signal?: AbortSignal,
): AsyncGenerator<ImportEvent> {
  const result = await client.GET('/api/v1/imports/{id}/events', {
    params: { path: { id } },
    parseAs: 'stream',
    signal,
  })
  if (result.error !== undefined || !result.response.body) dataOf(result)
  const decoder = new TextDecoder()
  let buffered = ''
  const reader = (result.response.body as ReadableStream<Uint8Array>).getReader()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return
      buffered += decoder.decode(value, { stream: true })
      for (let end = buffered.indexOf('\n\n'); end >= 0; end = buffered.indexOf('\n\n')) {
        const block = buffered.slice(0, end)
        buffered = buffered.slice(end + 2)
        let event = 'message'
        const data: string[] = []
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim()
          else if (line.startsWith('data:')) data.push(line.slice(5).trimStart())
        }
        if ((event === 'progress' || event === 'done') && data.length) {
          yield { event, job: JSON.parse(data.join('\n')) as ImportJob }
          if (event === 'done') return
        }
      }
    }
  } finally {
    // However the caller stops reading, the connection is let go.
    await reader.cancel().catch(() => {})
  }
}

/** Waits for an import to end (through its events); its final job. */
export async function waitForImport(client: BulkIoClient, id: string, signal?: AbortSignal): Promise<ImportJob> {
  let last: ImportJob | undefined
  for await (const { job } of importEvents(client, id, signal)) last = job
  if (!last?.done) throw new Error(`the events of import ${id} ended before the job did`)
  return last
}

export interface StreamExportOptions {
  resource: Resource
  format?: Format
  fields?: string[]
  /** Filters of the resource's stream route, e.g. `{ updated_after: '2026-01-01T00:00:00Z' }`. */
  filters?: Record<string, string>
  signal?: AbortSignal
}

const streamPaths = {
  users: '/api/v1/exports/users/stream',
  articles: '/api/v1/exports/articles/stream',
  comments: '/api/v1/exports/comments/stream',
} as const

/** Streams an export: the response, whose body is the file (not decoded: read it as it comes). */
export async function streamExport(client: BulkIoClient, options: StreamExportOptions): Promise<Response> {
  const query: Record<string, string> = { ...options.filters }
  if (options.format) query.format = options.format
  if (options.fields?.length) query.fields = options.fields.join(',')
  const result = await client.GET(streamPaths[options.resource], {
    params: { query: query as never },
    parseAs: 'stream',
    signal: options.signal,
  })
  if (result.error !== undefined) dataOf(result)
  return result.response
}
