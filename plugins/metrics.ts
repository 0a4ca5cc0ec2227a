import fastifyMetrics from 'fastify-metrics'
import fp from 'fastify-plugin'

// fastify-metrics is CommonJS with an `exports.default`: under Node's ESM interop the plugin
// is the default export's `default`.
const metricsPlugin = fastifyMetrics.default

/** Upper bounds in seconds: from a probe's few milliseconds to a large upload's minutes. */
const httpDurationBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]

/**
 * Prometheus metrics at /metrics: HTTP request durations labelled by method, route pattern and
 * status code, plus the process and event-loop metrics of the Prometheus client.
 *
 * Features add their own metrics in their plugin, after this one (`dependencies: ['metrics']`):
 *   new app.metrics.client.Counter({ name: 'bulkio_…_total', help: '…', labelNames: [...] })
 * They land in the same registry /metrics serves. Names start with `bulkio_`.
 * The registry is cleared when an app is built, so tests can build one app after another.
 */
export default fp(
  async (app) => {
    await app.register(metricsPlugin, {
      clearRegisterOnInit: true,
      endpoint: {
        url: '/metrics',
        method: 'GET',
        logLevel: 'warn',
        // HEAD /metrics like every other GET route (a probe may ask for the headers only).
        exposeHeadRoute: true,
        schema: {
          tags: ['observability'],
          operationId: 'getMetrics',
          summary: 'Prometheus metrics in the text exposition format',
          // Open, unless METRICS_AUTH=true: then one of the API keys (plugins/auth.ts).
          security: [{ bearerAuth: [] }, { apiKeyHeader: [] }, {}],
          response: {
            200: {
              description: 'Metrics in the Prometheus text exposition format (version 0.0.4).',
              content: { 'text/plain': { schema: { type: 'string' } } },
            },
          },
        },
        handler: async () => {}, // replaced by fastify-metrics
      },
      routeMetrics: {
        enabled: { histogram: true, summary: false },
        overrides: { histogram: { buckets: httpDurationBuckets } },
      },
    })
  },
  // After swagger, whose onRoute hook must see /metrics to document it.
  { name: 'metrics', dependencies: ['swagger'] },
)
