import { createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Kysely } from 'kysely'
import {
  FileMigrationProvider,
  type Migration,
  type MigrationProvider,
  type MigrationResult,
  Migrator,
  NO_MIGRATIONS,
} from 'kysely/migration'

const migrationFolder = fileURLToPath(new URL('./migrations', import.meta.url))

/** The migrations of several folders as one list (names must be unique across them). */
class FoldersMigrationProvider implements MigrationProvider {
  private readonly folders: readonly string[]

  constructor(folders: readonly string[]) {
    this.folders = folders
  }

  async getMigrations(): Promise<Record<string, Migration>> {
    const all: Record<string, Migration> = {}
    for (const folder of this.folders) {
      const found = await new FileMigrationProvider({ fs, path, migrationFolder: folder }).getMigrations()
      for (const [name, migration] of Object.entries(found)) {
        if (all[name]) throw new Error(`two migrations are named ${name}`)
        all[name] = migration
      }
    }
    return all
  }
}

/**
 * Kysely's migrator over db/migrations/ (and `extraFolders`: a test's resource brings its own);
 * it serialises concurrent runs with an advisory lock.
 */
export function createMigrator<Schema>(db: Kysely<Schema>, extraFolders: readonly string[] = []): Migrator {
  return new Migrator({ db, provider: new FoldersMigrationProvider([migrationFolder, ...extraFolders]) })
}

/** A migration run that failed; `applied` lists what did succeed before it. */
export class MigrationFailed extends Error {
  readonly applied: string[]

  constructor(cause: unknown, applied: string[]) {
    super(`migration failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
    this.name = 'MigrationFailed'
    this.applied = applied
  }
}

function outcome(resultSet: { error?: unknown; results?: MigrationResult[] }): string[] {
  const done = (resultSet.results ?? []).filter((result) => result.status === 'Success')
  const names = done.map((result) => result.migrationName)
  if (resultSet.error) throw new MigrationFailed(resultSet.error, names)
  return names
}

/** Applies every pending migration; returns the names applied (empty when up to date). */
export async function migrateToLatest<Schema>(
  db: Kysely<Schema>,
  extraFolders: readonly string[] = [],
): Promise<string[]> {
  return outcome(await createMigrator(db, extraFolders).migrateToLatest())
}

/** Reverts the newest applied migration; returns its name (empty when none is applied). */
export async function migrateDown<Schema>(db: Kysely<Schema>): Promise<string[]> {
  return outcome(await createMigrator(db).migrateDown())
}

/** Reverts every applied migration, newest first. */
export async function migrateToZero<Schema>(db: Kysely<Schema>): Promise<string[]> {
  return outcome(await createMigrator(db).migrateTo(NO_MIGRATIONS))
}

/** Names of migrations not yet applied, oldest first. */
export async function pendingMigrations<Schema>(
  db: Kysely<Schema>,
  extraFolders: readonly string[] = [],
): Promise<string[]> {
  const migrations = await createMigrator(db, extraFolders).getMigrations()
  return migrations.filter((migration) => !migration.executedAt).map((migration) => migration.name)
}

/** A fingerprint of the migration files: names a test template database built from them. */
export async function migrationsFingerprint(): Promise<string> {
  const hash = createHash('sha256')
  for (const name of (await fs.readdir(migrationFolder)).sort()) {
    hash.update(name).update(await fs.readFile(path.join(migrationFolder, name)))
  }
  return hash.digest('hex').slice(0, 12)
}
