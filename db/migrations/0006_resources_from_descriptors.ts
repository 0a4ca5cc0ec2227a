import { type Kysely, sql } from 'kysely'

// The job tables no longer list the resources: the service checks a job's `resource` against its
// descriptors (resources/) before it stores one, so adding a resource is one descriptor and one
// migration of its own table, not an edit of these constraints too.

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('import_jobs').dropConstraint('import_jobs_resource_check').execute()
  await db.schema.alterTable('export_jobs').dropConstraint('export_jobs_resource_check').execute()
}

/** Fails while a job names a resource other than the first three (remove those jobs first). */
export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['import_jobs', 'export_jobs']) {
    await db.schema
      .alterTable(table)
      .addCheckConstraint(`${table}_resource_check`, sql`resource in ('users', 'articles', 'comments')`)
      .execute()
  }
}
