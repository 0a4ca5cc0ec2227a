import {
  type Compilable,
  DummyDriver,
  type InferResult,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
} from 'kysely'
import type { Sql } from './connection.ts'
import type { Database } from './database.ts'

// One way to reach the database: postgres.js runs every statement, on the pool, reserved
// connection or transaction the caller holds (`sql`); Kysely only builds statements, typed
// against the tables (db/database.ts), and never connects. So a query function takes one
// handle, `sql`, and no caller chooses a driver. (The migrator is the one user of a connected
// Kysely: its migrations are written in Kysely's schema builder, db/migrator.ts.)
//
// Kysely running its own statements reserved a pool connection for each (an extra hop on the
// pool's queue per query) and added nothing here: the same postgres.js call, the same parsers.
//
// Prepared or not: statements are prepared (postgres.js caches them per connection), except
// the bulk upserts (db/upsert.ts): PostgreSQL switches a prepared statement to a generic plan
// after five runs, and the generic plan of an upsert over arrays of unknown size (the planner
// cannot see their length) measured 30 times slower than the custom plan of each run.

/** Builds statements; `run` executes them. */
export const query = new Kysely<Database>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (db) => new PostgresIntrospector(db),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
})

/** Runs a statement built with `query` on `sql` (a pool, a reserved connection, a transaction): its rows. */
export async function run<Built extends Compilable<unknown>>(
  sql: Sql,
  built: Built,
  options: { prepare?: boolean } = {},
): Promise<InferResult<Built>> {
  const rows = await execute(sql, built, options)
  return Array.from(rows) as unknown as InferResult<Built>
}

/** Runs a statement built with `query` on `sql`: the number of rows it wrote (an insert without `returning`). */
export async function runCount(
  sql: Sql,
  built: Compilable<unknown>,
  options: { prepare?: boolean } = {},
): Promise<number> {
  return (await execute(sql, built, options)).count
}

/** Compiles a statement and runs it on `sql`, prepared unless told otherwise: postgres.js's result. */
function execute(sql: Sql, built: Compilable<unknown>, options: { prepare?: boolean }) {
  const compiled = built.compile()
  return sql.unsafe(compiled.sql, compiled.parameters as never[], { prepare: options.prepare ?? true })
}

/** The first row of `run`, or undefined. */
export async function runFirst<Built extends Compilable<unknown>>(
  sql: Sql,
  built: Built,
): Promise<InferResult<Built>[number] | undefined> {
  return (await run(sql, built))[0]
}

/** The one row a statement must return (an insert's or update's `returning`). */
export async function runOne<Built extends Compilable<unknown>>(
  sql: Sql,
  built: Built,
): Promise<InferResult<Built>[number]> {
  const row = (await run(sql, built))[0]
  if (row === undefined) throw new Error('the statement returned no row')
  return row
}

/** Runs `work` in a transaction of `sql`: committed when it resolves, rolled back when it throws. */
export async function inTransaction<T>(sql: Sql, work: (transaction: Sql) => Promise<T>): Promise<T> {
  return (await sql.begin((transaction) => work(transaction as unknown as Sql))) as T
}
