import { Kysely } from 'kysely'
import { PostgresJSDialect } from 'kysely-postgres-js'
import postgres from 'postgres'
import type { Database } from './database.ts'

export type Sql = postgres.Sql

export interface DatabaseConnection {
  /** postgres.js: every query runs on it (db/query.ts). */
  sql: Sql
  /** Kysely over the same pool, for the migrator (db/migrator.ts). */
  db: Kysely<Database>
  /** Ends the pool; waits up to `timeoutSeconds` for running queries. */
  close(timeoutSeconds?: number): Promise<void>
}

export interface ConnectOptions {
  /** Most connections opened at once (default 10). */
  max?: number
  /** Seconds before opening a connection fails (default 10). */
  connectTimeoutSeconds?: number
  /** Shown in pg_stat_activity. */
  applicationName?: string
}

/** Opens a lazily connecting pool; nothing touches the network until the first query. */
export function connect(url: string, options: ConnectOptions = {}): DatabaseConnection {
  const sql = postgres(url, {
    max: options.max ?? 10,
    connect_timeout: options.connectTimeoutSeconds ?? 10,
    idle_timeout: 60,
    // Migrations and `create ... if not exists` emit NOTICEs; they are not worth a log line.
    onnotice: () => {},
    connection: { application_name: options.applicationName ?? 'bulk-io' },
  })
  const db = new Kysely<Database>({ dialect: new PostgresJSDialect({ postgres: sql }) })
  return {
    sql,
    db,
    close: (timeoutSeconds = 5) => sql.end({ timeout: timeoutSeconds }),
  }
}
