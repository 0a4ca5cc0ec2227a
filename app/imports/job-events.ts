import type { IncomingMessage, ServerResponse } from 'node:http'

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
  /**
   * Subscribes `changed` to word that the job may have changed (its end: NOTIFY), so that the
   * stream reads it at once rather than at the next poll; resolves to the unsubscribe. A failed
   * subscription leaves the poll alone.
   */
  subscribe?(changed: () => void): Promise<() => Promise<void>>
  /** How often the job is read without word of a change (500 ms). */
  pollMs?: number
}

/**
 * The server-sent events of an import: `event: progress` with the job whenever it changes (read
 * every half second, and at once on word of its end), a comment every 15 s of silence to keep
 * proxies from closing the stream, then `event: done` with the final job; the stream ends there,
 * when the client goes away, or when the service drains.
 */
export async function sendJobEvents(options: JobEventsOptions): Promise<void> {
  const { response } = options
  const pollMs = options.pollMs ?? POLL_MS
  response.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-request-id': options.requestId,
  })
  // Word of a change, or of the client's leaving, ends the pause between two reads.
  let open = true
  let changed = false
  let wake: (() => void) | undefined
  const pause = () =>
    new Promise<void>((resolve) => {
      if (changed || !open) return resolve()
      const timer = setTimeout(() => wake?.(), pollMs)
      wake = () => {
        clearTimeout(timer)
        wake = undefined
        resolve()
      }
    })
  options.request.on('close', () => {
    open = false
    wake?.()
  })
  // Not awaited: the first read goes ahead, and the poll covers a subscription that is slow or fails.
  const subscription = options.subscribe?.(() => {
    changed = true
    wake?.()
  })
  try {
    let last = ''
    let lastWrite = Date.now()
    while (open) {
      changed = false
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
      await pause()
      if (options.draining()) break
    }
  } finally {
    response.end()
    // Whenever the subscription comes, it goes.
    subscription?.then((unsubscribe) => unsubscribe()).catch(() => {})
  }
}
