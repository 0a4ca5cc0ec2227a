import { spawn } from 'node:child_process'
import { type EmbeddedPostgres, startEmbeddedPostgres, stopEmbeddedPostgres } from '../db/embedded.ts'
import { ConfigError, loadConfig } from '../plugins/config.ts'
import { connect } from './connection.ts'
import { migrateDown, migrateToLatest, migrateToZero } from './migrator.ts'

// Database chores for the Makefile: `node db/cli.ts up|down|reset|shell|stop`.
// They act on DATABASE_URL, else on the embedded PostgreSQL (started for the chore and stopped
// after it, or the running one reused).

const usage = `usage: node db/cli.ts <command>
  up      apply pending migrations
  down    revert the newest migration
  reset   revert every migration, then apply them all (deletes all data)
  shell   open psql on the database
  stop    stop the embedded PostgreSQL if it is running`

async function withDatabase(task: (url: string) => Promise<void>): Promise<void> {
  const config = loadConfig()
  let embedded: EmbeddedPostgres | undefined
  let url = config.DATABASE_URL
  if (!url) {
    embedded = await startEmbeddedPostgres({
      directory: config.EMBEDDED_DATABASE_DIR,
      port: config.EMBEDDED_DATABASE_PORT,
    })
    console.error(`embedded PostgreSQL in ${config.EMBEDDED_DATABASE_DIR} on 127.0.0.1:${embedded.port}`)
    url = embedded.url
  }
  try {
    await task(url)
  } finally {
    await embedded?.stop()
  }
}

async function migrate(direction: (db: ReturnType<typeof connect>['db']) => Promise<string[]>, verb: string) {
  await withDatabase(async (url) => {
    const connection = connect(url, { max: 1, applicationName: 'bulk-io migrate' })
    try {
      const names = await direction(connection.db)
      console.log(names.length ? `${verb}: ${names.join(', ')}` : `nothing to do: ${verb} none`)
    } finally {
      await connection.close()
    }
  })
}

const commands: Record<string, () => Promise<void>> = {
  up: () => migrate(migrateToLatest, 'applied'),
  down: () => migrate(migrateDown, 'reverted'),
  reset: async () => {
    await migrate(migrateToZero, 'reverted')
    await migrate(migrateToLatest, 'applied')
  },
  shell: () =>
    withDatabase(
      (url) =>
        new Promise((resolve, reject) => {
          const psql = spawn('psql', [url], { stdio: 'inherit' })
          psql.once('error', (error) =>
            reject(new Error(`cannot run psql (${error.message}); install it: apt-get install postgresql-client`)),
          )
          psql.once('exit', () => resolve())
        }),
    ),
  stop: async () => {
    const { EMBEDDED_DATABASE_DIR } = loadConfig()
    const stopped = await stopEmbeddedPostgres(EMBEDDED_DATABASE_DIR)
    console.log(
      stopped ? `stopped the embedded PostgreSQL in ${EMBEDDED_DATABASE_DIR}` : 'no embedded PostgreSQL was running',
    )
  },
}

const command = commands[process.argv[2] ?? '']
if (!command) {
  console.error(usage)
  process.exit(2)
}
try {
  await command()
} catch (error) {
  console.error(error instanceof ConfigError ? error.message : `failed: ${(error as Error).message}`)
  process.exit(1)
}
