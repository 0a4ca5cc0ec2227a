import fp from 'fastify-plugin'
import type { Kysely } from 'kysely'
import { connect, type Sql } from '../db/connection.ts'
import type { Database } from '../db/database.ts'

export interface DatabaseOptions {
  /** Resolved connection URL: DATABASE_URL, or the embedded server's. */
  url: string
  /** `embedded` when app/server.ts started (or reused) the embedded PostgreSQL. */
  mode: 'external' | 'embedded'
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The pool: every query function takes it (db/query.ts: Kysely builds, postgres.js runs). */
    sql: Sql
    /** Kysely connected to the same pool, for the migrator only (its migrations use Kysely's schema builder). */
    migrationDb: Kysely<Database>
    database: DatabaseOptions
  }
}

/** The connection pool, shared by every plugin and route; ended when the app closes. */
export default fp(
  async (app, options: { database: DatabaseOptions }) => {
    const connection = connect(options.database.url, {
      max: app.config.DATABASE_POOL_MAX,
      connectTimeoutSeconds: app.config.DATABASE_CONNECT_TIMEOUT_SECONDS,
    })
    app.decorate('sql', connection.sql)
    app.decorate('migrationDb', connection.db)
    app.decorate('database', options.database)
    app.addHook('onClose', async () => {
      await connection.close()
    })
  },
  { name: 'db', dependencies: ['config'] },
)
