import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'

const digest = (key: string) => createHash('sha256').update(key).digest()

/** The key a request presents: `Authorization: Bearer <key>`, else `X-API-Key: <key>`. */
function presentedKey(request: FastifyRequest): string | undefined {
  const authorization = request.headers.authorization
  if (authorization?.toLowerCase().startsWith('bearer ')) return authorization.slice(7).trim()
  const header = request.headers['x-api-key']
  return typeof header === 'string' ? header.trim() : undefined
}

/**
 * Optional API-key authentication. With API_KEYS empty it does nothing; with keys set, every
 * /api/* request (matched or not, so a 401 never reveals which routes exist) needs one of them,
 * and /metrics too when METRICS_AUTH is true. Probes and /docs stay open.
 */
export default fp(
  async (app) => {
    // Documented whether or not keys are configured, so openapi.yaml is the same everywhere:
    // /api/* needs a key, everything else is open unless its schema says otherwise (/metrics).
    const apiKey: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }]
    app.addHook('onRoute', (route) => {
      if (!route.schema || route.schema.hide) return
      route.schema.security ??= route.url.startsWith('/api/') ? apiKey : []
    })

    const keys = app.config.API_KEYS.split(',').filter(Boolean).map(digest)
    if (keys.length === 0) return

    // Comparing fixed-length digests in constant time, against every key without stopping early,
    // leaks neither a key's length nor how much of it matched.
    const isValid = (key: string) => {
      const candidate = digest(key)
      let valid = false
      for (const known of keys) valid = timingSafeEqual(known, candidate) || valid
      return valid
    }

    app.addHook('onRequest', async (request, reply) => {
      const path = request.routeOptions.url ?? request.url.split('?')[0] ?? ''
      const guarded = path.startsWith('/api/') || (app.config.METRICS_AUTH && path === '/metrics')
      if (!guarded) return
      const key = presentedKey(request)
      if (key && isValid(key)) return
      reply.header('WWW-Authenticate', 'Bearer realm="bulk-io"')
      return reply.problem(
        'unauthorized',
        key ? 'The API key is not valid.' : 'Send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`.',
      )
    })
  },
  // After request-id and metrics, whose onRequest hooks must run before this one can answer 401:
  // a rejected request still echoes its X-Request-Id and is still counted.
  { name: 'auth', dependencies: ['config', 'problem-details', 'request-id', 'metrics'] },
)
