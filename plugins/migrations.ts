import { setTimeout as sleep } from 'node:timers/promises'
import fp from 'fastify-plugin'
import { isDatabaseUnavailable } from '../db/errors.ts'
import { migrateToLatest, pendingMigrations } from '../db/migrator.ts'

export interface Migrations {
  /** True once the schema is at the newest migration; /ready waits for it. */
  readonly ready: boolean
  /**
   * Applies pending migrations (MIGRATE_ON_START=true) or checks that none is pending (false).
   * While the database is unreachable it retries with backoff until the app closes; any other
   * failure (a migration that errors) rejects, and the caller should stop the process.
   */
  bringUpToDate(): Promise<void>
  /** Checks again for pending migrations (when migrations are run from outside the service). */
  recheck(): Promise<boolean>
}

declare module 'fastify' {
  interface FastifyInstance {
    migrations: Migrations
  }
}

const firstRetryDelayMs = 500
const longestRetryDelayMs = 10_000

/** Keeps the schema current: app/server.ts calls `bringUpToDate()` once the server listens. */
export default fp(
  async (app) => {
    let ready = false
    // A resource defined outside this repository (a test's) may bring its own migrations.
    const extraFolders = app.resources.flatMap((resource) => (resource.migrations ? [resource.migrations] : []))

    async function recheck(): Promise<boolean> {
      ready = (await pendingMigrations(app.migrationDb, extraFolders)).length === 0
      return ready
    }

    async function attempt(): Promise<void> {
      if (!app.config.MIGRATE_ON_START) {
        const pending = await pendingMigrations(app.migrationDb, extraFolders)
        ready = pending.length === 0
        if (!ready) {
          app.log.warn(
            { pending },
            'migrations are pending and MIGRATE_ON_START=false: /ready answers 503 until `make migrate-up` runs them',
          )
        }
        return
      }
      const started = performance.now()
      const applied = await migrateToLatest(app.migrationDb, extraFolders)
      ready = true
      const elapsedMs = Math.round(performance.now() - started)
      app.log.info({ applied, elapsed_ms: elapsedMs }, applied.length ? 'migrations applied' : 'schema is up to date')
    }

    async function bringUpToDate(): Promise<void> {
      let delay = firstRetryDelayMs
      for (;;) {
        try {
          return await attempt()
        } catch (error) {
          const cause = (error as Error).cause ?? error
          if (!isDatabaseUnavailable(cause)) throw error
          app.log.warn({ err: cause, retry_in_ms: delay }, 'database unreachable; migrations will retry')
        }
        try {
          await sleep(delay, undefined, { signal: app.lifecycle.signal })
        } catch {
          return // the app is closing
        }
        delay = Math.min(delay * 2, longestRetryDelayMs)
      }
    }

    app.decorate('migrations', {
      get ready() {
        return ready
      },
      bringUpToDate,
      recheck,
    })
  },
  { name: 'migrations', dependencies: ['config', 'db', 'lifecycle', 'resources'] },
)
