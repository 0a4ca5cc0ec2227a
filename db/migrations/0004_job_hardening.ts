import { type Kysely, sql } from 'kysely'

// What jobs need to stay exact under bad input and bad timing:
// - import_jobs.unknown_fields (the first names met, bounded) and unknown_fields_more (more were
//   met): the unknown-field warning is rebuilt from them, so a resumed job still names what it
//   saw before, and the warning stays small whatever the file holds;
// - import_jobs.waiting: why a running job is not advancing (a lock held by another transaction);
// - import_jobs.not_before: a job handed back to wait (another import of its resource holds the
//   resource's write lock) is not claimed again at once, so runners never spin on it;
// - idempotency_keys.token: the request that holds a key, so that only it can complete or free it.
// Existing rows keep their meaning: their warnings stay as written, their keys have no token
// (a key in flight without a token can only go stale and be taken over).

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('import_jobs')
    .addColumn('unknown_fields', sql`text[]`, (column) => column.notNull().defaultTo(sql`'{}'::text[]`))
    .addColumn('unknown_fields_more', 'boolean', (column) => column.notNull().defaultTo(false))
    .addColumn('waiting', 'jsonb')
    .addColumn('not_before', 'timestamptz')
    .execute()
  await db.schema.alterTable('idempotency_keys').addColumn('token', 'uuid').execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('idempotency_keys').dropColumn('token').execute()
  await db.schema
    .alterTable('import_jobs')
    .dropColumn('not_before')
    .dropColumn('waiting')
    .dropColumn('unknown_fields_more')
    .dropColumn('unknown_fields')
    .execute()
}
