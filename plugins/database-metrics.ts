import fp from 'fastify-plugin'
import { type JobGaugeStatus, serviceConnectionCounts, unfinishedJobCounts } from '../db/jobs.ts'

const kinds = ['import', 'export'] as const
const statuses: JobGaugeStatus[] = ['queued', 'running', 'waiting']

/**
 * Metrics the database knows, read when /metrics is scraped: the jobs not yet done, by kind and
 * state (the queue, for every process), and the service's database connections by pool and state.
 * A scrape never waits on a slow database for more than HEALTH_TIMEOUT_MS: the gauges then keep
 * their last values.
 */
export default fp(
  async (app) => {
    const client = app.metrics.client
    const timeoutMs = app.config.HEALTH_TIMEOUT_MS
    /** Runs a query for a scrape; undefined when it fails or takes too long. */
    const read = async <T>(query: () => Promise<T>): Promise<T | undefined> => {
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), timeoutMs)
      })
      try {
        return await Promise.race([query(), late])
      } catch (error) {
        app.log.debug({ err: error }, 'a metric could not be read from the database')
        return undefined
      } finally {
        clearTimeout(timer)
      }
    }

    new client.Gauge({
      name: 'bulkio_jobs',
      help: 'Jobs not yet done in the whole service, by kind (import, export) and status (queued, running, waiting: for a resource, row locks or a retry).',
      labelNames: ['kind', 'status'],
      async collect() {
        const rows = await read(() => unfinishedJobCounts(app.sql))
        if (!rows) return
        for (const kind of kinds) for (const status of statuses) this.set({ kind, status }, 0)
        for (const row of rows) this.set({ kind: row.kind, status: row.status }, row.count)
      },
    })

    new client.Gauge({
      name: 'bulkio_database_connections',
      help: "The service's connections to its database (every process), by pool (application_name) and state (active, idle, idle in transaction…).",
      labelNames: ['pool', 'state'],
      async collect() {
        const rows = await read(() => serviceConnectionCounts(app.sql))
        if (!rows) return
        this.reset()
        for (const row of rows) this.set({ pool: row.pool, state: row.state }, row.count)
      },
    })
  },
  { name: 'database-metrics', dependencies: ['config', 'db', 'metrics'] },
)
