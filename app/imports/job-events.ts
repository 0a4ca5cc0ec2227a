import type { IncomingMessage, ServerResponse } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'

const POLL_MS = 500
const KEEP_ALIVE_MS = 15_000

export interface JobEventsOptions {
  request: IncomingMessage
  response: ServerResponse
  requestId: string
  /** The job's body as GET /api/v1/imports/{id} answers it now. */
  current(): Promise<{ done: boolean }>
  /** True once the service drains (SIGTERM): the stream ends, and the client reconnects elsewhere. */
  draining(): boolean
}

/**
 * The server-sent events of an import: `event: progress` with the job whenever it changes (read
 * every half second), a comment every 15 s of silence to keep proxies from closing the stream,
 * then `event: done` with the final job; the stream ends there, when the client goes away, or
 * when the service drains.
 */
export async function sendJobEvents(options: JobEventsOptions): Promise<void> {
  const { response } = options
  response.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-request-id': options.requestId,
  })
  let open = true
  options.request.on('close', () => {
    open = false
  })
  let last = ''
  let lastWrite = Date.now()
  while (open) {
    const body = await options.current()
    const text = JSON.stringify(body)
    if (body.done) {
      response.write(`event: done\ndata: ${text}\n\n`)
      break
    }
    if (text !== last) {
      response.write(`event: progress\ndata: ${text}\n\n`)
      last = text
      lastWrite = Date.now()
    } else if (Date.now() - lastWrite > KEEP_ALIVE_MS) {
      response.write(': keep-alive\n\n')
      lastWrite = Date.now()
    }
    await sleep(POLL_MS)
    if (options.draining()) break
  }
  response.end()
}
