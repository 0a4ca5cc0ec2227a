import createFetchClient, { type Client } from 'openapi-fetch'
import type { components, operations, paths } from './openapi.ts'

// The typed client of the bulk-io API. Every request and response type comes from openapi.ts,
// which is generated from the service's openapi.yaml (`make generate`); openapi-fetch sends the
// requests. The helpers below cover what a generic client does not: a multipart upload, the
// server-sent progress events of an import, and a streamed export.

export type { components, operations, paths }
export type ImportJob = components['schemas']['ImportJob']
export type ExportJob = components['schemas']['ExportJob']
export type Problem = components['schemas']['Problem']
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
