import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import postgres from 'postgres'
import { connect } from '../db/connection.ts'
import { embeddedPostgresUrl, startEmbeddedPostgres, stopEmbeddedPostgres } from '../db/embedded.ts'
import { migrateToLatest, migrationsFingerprint } from '../db/migrator.ts'

// Every test file gets a database of its own, cloned from a migrated template, so files run in
// parallel without seeing each other's rows. The server comes from, in this order:
//   TEST_DATABASE_URL                  any PostgreSQL you point at (CI: the local one)
//   TEST_DATABASE=testcontainers       a postgres container (needs a Docker engine)
//   otherwise                          the embedded PostgreSQL, data in .data/test-postgres
// tap's `before` step (test/setup/start-database.ts) prepares it once per run; a file run on
// its own prepares it on first use.

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const stateFile = path.join(root, '.data', 'test', 'database.json')
const embeddedDirectory = path.join(root, '.data', 'test-postgres')
/** The image compose.yaml uses, so container runs test what users run. */
const containerImage = 'postgres:17-alpine'

interface TestDatabaseState {
  /** Maintenance connection URL (any database on the server). */
  url: string
  /** Name of the migrated template database. */
  template: string
  /** Set when this run started a server that the `after` step must stop. */
  embeddedDirectory?: string
  containerId?: string
}

/** URL of `database` on the server that `url` points at. */
export function databaseUrl(url: string, database: string): string {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

async function startServer(): Promise<Omit<TestDatabaseState, 'template'>> {
  if (process.env.TEST_DATABASE_URL) return { url: process.env.TEST_DATABASE_URL }
  if (process.env.TEST_DATABASE === 'testcontainers') {
    // The container must outlive this short `before` process: Ryuk would reap it when we exit.
    process.env.TESTCONTAINERS_RYUK_DISABLED = 'true'
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql')
    const container = await new PostgreSqlContainer(containerImage).start()
    return { url: container.getConnectionUri(), containerId: container.getId() }
  }
  const running = await embeddedPostgresUrl(embeddedDirectory)
  if (running) return { url: running }
  const server = await startEmbeddedPostgres({ directory: embeddedDirectory, port: 0 })
  server.release() // it serves every test file; the `after` step stops it
  return { url: server.url, embeddedDirectory }
}

/**
 * Starts (or finds) the test server and makes sure the template for the current migrations
 * exists. Templates are named after a fingerprint of db/migrations/, so a changed migration
 * gets a fresh template and stale ones are dropped.
 */
export async function prepareTestDatabases(): Promise<TestDatabaseState> {
  const server = await startServer()
  const template = `bulkio_template_${await migrationsFingerprint()}`
  const admin = postgres(server.url, { max: 1, onnotice: () => {} })
  try {
    const existing = await admin<{ datname: string }[]>`
      select datname from pg_database where datname like 'bulkio\\_template\\_%'`
    for (const { datname } of existing) {
      if (datname !== template) await admin`drop database if exists ${admin(datname)} with (force)`
    }
    if (!existing.some(({ datname }) => datname === template)) {
      const building = `${template}_${randomBytes(4).toString('hex')}`
      await admin`create database ${admin(building)}`
      const connection = connect(databaseUrl(server.url, building), { max: 1 })
      try {
        await migrateToLatest(connection.db)
      } finally {
        await connection.close()
      }
      // A rename is atomic: a concurrent run sees either no template or a complete one.
      await admin`alter database ${admin(building)} rename to ${admin(template)}`.catch(async () => {
        await admin`drop database ${admin(building)} with (force)`
      })
    }
  } finally {
    await admin.end()
  }
  const state = { ...server, template }
  await mkdir(path.dirname(stateFile), { recursive: true })
  await writeFile(stateFile, JSON.stringify(state, null, 2))
  return state
}

/** Stops what prepareTestDatabases started (tap's `after` step). */
export async function releaseTestDatabases(): Promise<void> {
  const state = await readState()
  if (state?.embeddedDirectory) await stopEmbeddedPostgres(state.embeddedDirectory)
  if (state?.containerId) {
    const { getContainerRuntimeClient } = await import('testcontainers')
    const client = await getContainerRuntimeClient()
    await client.container.stop(client.container.getById(state.containerId))
  }
}

async function readState(): Promise<TestDatabaseState | null> {
  try {
    return JSON.parse(await readFile(stateFile, 'utf8'))
  } catch {
    return null
  }
}

let cached: Promise<TestDatabaseState> | undefined
async function state(): Promise<TestDatabaseState> {
  cached ??= (async () => {
    const known = await readState()
    if (known && (!process.env.TEST_DATABASE_URL || known.url === process.env.TEST_DATABASE_URL)) {
      const admin = postgres(known.url, { max: 1, connect_timeout: 5 })
      const [found] = await admin`select 1 from pg_database where datname = ${known.template}`.catch(() => [])
      await admin.end()
      if (found && known.template === `bulkio_template_${await migrationsFingerprint()}`) return known
    }
    return prepareTestDatabases()
  })()
  return cached
}

interface TeardownHost {
  teardown(fn: () => unknown): void
  passing(): boolean
  comment(...message: unknown[]): void
}

/**
 * A new database for one test file: migrated (cloned from the template) unless `empty` is set.
 * Dropped when the test ends, except after a failure: then it is kept, and named, for a look.
 * @returns its connection URL
 */
export async function createTestDatabase(t: TeardownHost, options: { empty?: boolean } = {}): Promise<string> {
  const { url, template } = await state()
  const name = `bulkio_test_${randomBytes(6).toString('hex')}`
  const admin = postgres(url, { max: 1, onnotice: () => {} })
  try {
    if (options.empty) await admin`create database ${admin(name)}`
    else await admin`create database ${admin(name)} template ${admin(template)}`
  } finally {
    await admin.end()
  }
  t.teardown(async () => {
    if (!t.passing()) {
      t.comment(`kept database ${name} of the failed test for inspection`)
      return
    }
    const cleanup = postgres(url, { max: 1, onnotice: () => {} })
    await cleanup`drop database if exists ${cleanup(name)} with (force)`
    await cleanup.end()
  })
  return databaseUrl(url, name)
}
