import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Static } from '@sinclair/typebox'
import { connect } from '../../db/connection.ts'
import { isDatabaseUnavailable } from '../../db/errors.ts'
import { pingDatabase } from '../../db/health.ts'
import packageJson from '../../package.json' with { type: 'json' }
import { ref } from '../../schemas/common.ts'
import {
  DatabaseCheckSchema,
  HealthProblemSchema,
  HealthSchema,
  LivenessSchema,
  ReadinessSchema,
} from '../../schemas/health.ts'
import { PROBLEM_MEDIA_TYPE, problemResponse } from '../../schemas/problem.ts'

type DatabaseCheck = Static<typeof DatabaseCheckSchema>

/**
 * Kubernetes probes. /live: the event loop answers. /ready: this instance can take traffic
 * (schema current, database answering, not draining). /health: a report for humans and
 * monitors, with the database's round-trip time.
 */
const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  for (const schema of [DatabaseCheckSchema, HealthSchema, HealthProblemSchema, ReadinessSchema, LivenessSchema]) {
    app.addSchema(schema)
  }

  // The probes get a connection of their own: a pool saturated by bulk work must not make the
  // database look down and take the instance out of rotation.
  const openProbe = () =>
    connect(app.database.url, {
      max: 1,
      connectTimeoutSeconds: Math.max(1, Math.ceil(app.config.HEALTH_TIMEOUT_MS / 1000)),
      applicationName: 'bulk-io probe',
    })
  let probe = openProbe()
  app.addHook('onClose', async () => probe.close(1))

  async function ping() {
    try {
      return await pingDatabase(probe.sql, app.config.HEALTH_TIMEOUT_MS)
    } catch (error) {
      // A failed probe connection is replaced, never reused: after an outage postgres.js can
      // report a dead connection's error once more, or keep a broken connection for good.
      const failed = probe
      probe = openProbe()
      void failed.close(0).catch(() => {})
      // A lost connection is retried once on the fresh one; a timeout is not (it would double).
      if (!isDatabaseUnavailable(error)) throw error
      return await pingDatabase(probe.sql, app.config.HEALTH_TIMEOUT_MS)
    }
  }

  async function checkDatabase(): Promise<DatabaseCheck> {
    const mode = app.database.mode
    try {
      const { latencyMs, serverVersion } = await ping()
      return { status: 'up', mode, latency_ms: latencyMs, server_version: serverVersion }
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error)
      return { status: 'down', mode, latency_ms: null, error: reason || (error as { code?: string }).code }
    }
  }

  const uptimeSeconds = () => Math.round((Date.now() - app.lifecycle.startedAt.getTime()) / 1000)

  app.get(
    '/health',
    {
      logLevel: 'warn',
      schema: {
        tags: ['probes'],
        operationId: 'getHealth',
        summary: 'Status of the service and its database',
        response: {
          200: { ...ref(HealthSchema), description: 'The service and its database are up.' },
          503: {
            description: 'The database is down or not answering in time.',
            content: { [PROBLEM_MEDIA_TYPE]: { schema: ref(HealthProblemSchema) } },
          },
        },
      },
    },
    async (_request, reply) => {
      const database = await checkDatabase()
      if (database.status === 'down') {
        return reply.problem('database_unavailable', `The database is not answering: ${database.error}.`, { database })
      }
      return { status: 'ok' as const, version: packageJson.version, uptime_seconds: uptimeSeconds(), database }
    },
  )

  app.get(
    '/ready',
    {
      logLevel: 'warn',
      schema: {
        tags: ['probes'],
        operationId: 'getReadiness',
        summary:
          'Readiness: 200 once migrations ran and the database (and with STORAGE=s3 the store) answers; 503 while draining',
        response: {
          200: { ...ref(ReadinessSchema), description: 'This instance can take traffic.' },
          503: problemResponse(
            'Not ready: `reason` is `draining`, `database_down`, `store_down` or `migrations_pending`.',
          ),
        },
      },
    },
    async (_request, reply) => {
      if (app.lifecycle.draining) {
        return reply.problem('service_unavailable', 'The service is shutting down.', { reason: 'draining' })
      }
      const database = await checkDatabase()
      if (database.status === 'down') {
        return reply.problem('database_unavailable', `The database is not answering: ${database.error}.`, {
          reason: 'database_down',
        })
      }
      if (app.config.STORAGE === 's3') {
        // A write, read and delete in the bucket, at most every few seconds (plugins/storage.ts).
        const store = await app.storage.health()
        if (!store.ok) {
          return reply.problem('store_unavailable', `The object store is not usable: ${store.reason}.`, {
            reason: 'store_down',
          })
        }
      }
      const migrated = app.migrations.ready || (!app.config.MIGRATE_ON_START && (await app.migrations.recheck()))
      if (!migrated) {
        const detail = app.config.MIGRATE_ON_START
          ? 'Migrations are still running.'
          : 'Migrations are pending and MIGRATE_ON_START is false: run `make migrate-up`.'
        return reply.problem('service_unavailable', detail, { reason: 'migrations_pending' })
      }
      return { status: 'ready' as const }
    },
  )

  app.get(
    '/live',
    {
      logLevel: 'warn',
      schema: {
        tags: ['probes'],
        operationId: 'getLiveness',
        summary: 'Liveness: 200 while the event loop answers',
        response: { 200: { ...ref(LivenessSchema), description: 'The process is alive.' } },
      },
    },
    async () => ({ status: 'alive' as const, uptime_seconds: uptimeSeconds() }),
  )
}

export default healthRoutes
