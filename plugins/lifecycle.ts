import fp from 'fastify-plugin'

export interface Lifecycle {
  /** Set by the shutdown sequence: /ready answers 503 from then on. */
  draining: boolean
  /** Aborted when the app closes: long-running background work (retries, jobs) stops on it. */
  signal: AbortSignal
  /** When this process started serving, for uptime. */
  startedAt: Date
}

declare module 'fastify' {
  interface FastifyInstance {
    lifecycle: Lifecycle
  }
}

/** The process-wide state that probes read and shutdown writes. */
export default fp(
  async (app) => {
    const controller = new AbortController()
    const lifecycle: Lifecycle = { draining: false, signal: controller.signal, startedAt: new Date() }
    app.decorate('lifecycle', lifecycle)
    app.addHook('onClose', async () => controller.abort())
    // While draining, every response closes its connection: keep-alive clients reconnect
    // (elsewhere), and the server's close is not held up by idle keep-alive sockets.
    app.addHook('onSend', async (_request, reply) => {
      if (lifecycle.draining) reply.header('connection', 'close')
    })
  },
  { name: 'lifecycle' },
)
