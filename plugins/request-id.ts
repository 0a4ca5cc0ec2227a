import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import fp from 'fastify-plugin'

/** Header that carries a request id in (from a proxy or client) and out. */
export const REQUEST_ID_HEADER = 'x-request-id'

/**
 * A request id: the caller's X-Request-Id when it is a short token (so one id follows a request
 * through proxies and logs), else a new UUID. Anything else is replaced: it ends up in logs.
 */
export function requestId(request: IncomingMessage): string {
  const given = request.headers[REQUEST_ID_HEADER]
  return typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID()
}

/** Echoes the request id in every response, so a client can quote it (problems carry it too). */
export default fp(
  async (app) => {
    app.addHook('onRequest', async (request, reply) => {
      reply.header(REQUEST_ID_HEADER, request.id)
    })
  },
  { name: 'request-id' },
)
