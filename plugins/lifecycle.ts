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
    app.decorate('lifecycle', { draining: false, signal: controller.signal, startedAt: new Date() })
    app.addHook('onClose', async () => controller.abort())
  },
  { name: 'lifecycle' },
)
