import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { sendJobEvents } from '../../../app/imports/job-events.ts'
import { JOB_CHANNEL, watchJob } from '../../../db/job-queue.ts'
import { buildTestApp } from '../../helper.ts'

// An import's server-sent events (app/imports/job-events.ts) wake on the NOTIFY of the job's end
// (watchJob, a real LISTEN on the test database) instead of waiting for the next read. The read
// interval here is a minute: an event that comes sooner came from the NOTIFY.

const POLL_MS = 60_000

interface Stream {
  /** Times the job was read. */
  reads(): number
  /** Sets what the next reads answer. */
  answer(body: { done: boolean; step: number }): void
  /** Resolves when the subscription listens. */
  listening: Promise<void>
  /** Resolves when the subscription was let go. */
  unsubscribed: Promise<void>
  /** Resolves when sendJobEvents returned. */
  ended: Promise<void>
}

/** A server whose one request streams the events of job `id`, its reads counted. */
async function eventServer(
  t: Test,
  id: string,
): Promise<{ url: string; stream: Promise<Stream>; notify: (jobId: string) => Promise<unknown> }> {
  const app = await buildTestApp(t)
  let resolveStream: (stream: Stream) => void = () => {}
  const stream = new Promise<Stream>((resolve) => {
    resolveStream = resolve
  })
  const server: Server = createServer((request, response) => {
    let reads = 0
    let body = { done: false, step: 1 }
    let listening: () => void = () => {}
    let unsubscribed: () => void = () => {}
    const state: Omit<Stream, 'ended'> = {
      reads: () => reads,
      answer: (next) => {
        body = next
      },
      listening: new Promise((resolve) => {
        listening = resolve
      }),
      unsubscribed: new Promise((resolve) => {
        unsubscribed = resolve
      }),
    }
    const ended = sendJobEvents({
      request,
      response,
      requestId: 'test',
      current: async () => {
        reads += 1
        return body
      },
      draining: () => false,
      pollMs: POLL_MS,
      subscribe: async (changed) => {
        const unsubscribe = await watchJob(app.sql, id, changed)
        listening()
        return async () => {
          await unsubscribe()
          unsubscribed()
        }
      },
    })
    resolveStream({ ...state, ended })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  const notify = async (jobId: string) => await app.sql`select pg_notify(${JOB_CHANNEL}, ${jobId})`
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, stream, notify }
}

/** The events of a text/event-stream as they come. */
async function* events(body: ReadableStream<Uint8Array>): AsyncGenerator<{ event: string; data: string }> {
  const decoder = new TextDecoder()
  let buffered = ''
  for await (const chunk of body) {
    buffered += decoder.decode(chunk, { stream: true })
    for (let end = buffered.indexOf('\n\n'); end >= 0; end = buffered.indexOf('\n\n')) {
      const block = buffered.slice(0, end)
      buffered = buffered.slice(end + 2)
      const event = /^event: (.*)$/m.exec(block)?.[1]
      const data = /^data: (.*)$/m.exec(block)?.[1]
      if (event !== undefined && data !== undefined) yield { event, data }
    }
  }
}

t.test("the done event follows the job's NOTIFY at once; another job's NOTIFY reads nothing", async (t) => {
  const id = randomUUID()
  const { url, stream: pending, notify } = await eventServer(t, id)
  const response = await fetch(url)
  const received = events(response.body as ReadableStream<Uint8Array>)
  const stream = await pending
  const first = await received.next()
  t.same(first.value, { event: 'progress', data: JSON.stringify({ done: false, step: 1 }) })
  await stream.listening

  await notify(randomUUID())
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(stream.reads(), 1, "another job's NOTIFY does not read the job again")

  stream.answer({ done: true, step: 2 })
  const notified = Date.now()
  await notify(id)
  const done = await received.next()
  t.same(done.value, { event: 'done', data: JSON.stringify({ done: true, step: 2 }) })
  t.ok(Date.now() - notified < POLL_MS / 2, 'the done event came with the NOTIFY, not with the next read')
  t.equal(stream.reads(), 2)
  t.equal((await received.next()).done, true, 'the stream ends after the done event')
  await stream.ended
  await stream.unsubscribed
})

t.test('a client that goes away ends the stream at once, and its subscription is let go', async (t) => {
  const id = randomUUID()
  const { url, stream: pending } = await eventServer(t, id)
  const aborted = new AbortController()
  const response = await fetch(url, { signal: aborted.signal })
  const received = events(response.body as ReadableStream<Uint8Array>)
  const stream = await pending
  t.equal((await received.next()).value?.event, 'progress')
  await stream.listening
  const left = Date.now()
  aborted.abort()
  await stream.ended
  t.ok(Date.now() - left < POLL_MS / 2, 'the stream ended when its client went away, not at the next read')
  await stream.unsubscribed
  t.equal(stream.reads(), 1)
})
