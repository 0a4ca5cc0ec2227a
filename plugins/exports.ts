import fp from 'fastify-plugin'
import { connect, type Sql } from '../db/connection.ts'
import { resourceNames } from '../resources/index.ts'
import { exportFormats } from '../schemas/exports.ts'

export type ExportMode = 'stream' | 'async'

export interface ExportMetrics {
  /** One finished export: rows and bytes written, and how long it took. */
  finished(
    labels: { resource: string; format: string; mode: ExportMode },
    rows: number,
    bytes: number,
    seconds: number,
  ): void
  /** An export file deleted at expiry, and whether it was ever downloaded. */
  expired(resource: string, fetched: boolean): void
}

export interface Exports {
  /** postgres.js pool of streaming exports: each stream holds a connection until it ends. */
  sql: Sql
  metrics: ExportMetrics
  /** Takes a stream slot (false when EXPORT_MAX_STREAMS streams run); the release function gives it back. */
  acquireStream(resource: string): (() => void) | undefined
}

declare module 'fastify' {
  interface FastifyInstance {
    exports: Exports
  }
}

/**
 * What exports share: a connection pool of their own (a long stream must not take the
 * connections that job status requests need), the EXPORT_MAX_STREAMS bound, and the export
 * metrics (streams here, async jobs and expired files through plugins/jobs.ts).
 */
export default fp(
  async (app) => {
    const { config } = app
    const connection = connect(app.database.url, {
      max: config.EXPORT_MAX_STREAMS,
      connectTimeoutSeconds: config.DATABASE_CONNECT_TIMEOUT_SECONDS,
      applicationName: 'bulk-io export',
    })
    const client = app.metrics.client
    const labelNames = ['resource', 'format', 'mode'] as const
    const rowsTotal = new client.Counter({
      name: 'bulkio_export_rows_total',
      help: 'Rows exported, by resource, format and mode (stream, async).',
      labelNames,
    })
    const bytesTotal = new client.Counter({
      name: 'bulkio_export_bytes_total',
      help: 'Bytes exported (before HTTP compression; async files as stored), by resource, format and mode.',
      labelNames,
    })
    const duration = new client.Histogram({
      name: 'bulkio_export_duration_seconds',
      help: 'Duration of finished exports, by resource, format and mode.',
      labelNames,
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
    })
    const streamsInProgress = new client.Gauge({
      name: 'bulkio_export_streams_in_progress',
      help: 'Streaming exports being sent by this process, by resource.',
      labelNames: ['resource'],
    })
    const expiredTotal = new client.Counter({
      name: 'bulkio_exports_expired_total',
      help: 'Export files deleted at expiry, by resource and whether they were ever downloaded (fetched: true, false).',
      labelNames: ['resource', 'fetched'],
    })
    // Every series from the start, at zero (rates and alerts have data before the first export).
    for (const resource of resourceNames(app.resources)) {
      streamsInProgress.set({ resource }, 0)
      for (const fetched of ['true', 'false']) expiredTotal.inc({ resource, fetched }, 0)
      for (const format of exportFormats) {
        for (const mode of ['stream', 'async']) {
          rowsTotal.inc({ resource, format, mode }, 0)
          bytesTotal.inc({ resource, format, mode }, 0)
        }
      }
    }
    let streams = 0

    app.decorate('exports', {
      sql: connection.sql,
      metrics: {
        finished(labels, rows, bytes, seconds) {
          rowsTotal.inc(labels, rows)
          bytesTotal.inc(labels, bytes)
          duration.observe(labels, seconds)
        },
        expired(resource, fetched) {
          expiredTotal.inc({ resource, fetched: String(fetched) })
        },
      },
      acquireStream(resource) {
        if (streams >= config.EXPORT_MAX_STREAMS) return undefined
        streams++
        streamsInProgress.inc({ resource })
        let released = false
        return () => {
          if (released) return
          released = true
          streams--
          streamsInProgress.dec({ resource })
        }
      },
    })
    app.addHook('onClose', async () => {
      await connection.close()
    })
  },
  { name: 'exports', dependencies: ['config', 'db', 'metrics', 'resources'] },
)
