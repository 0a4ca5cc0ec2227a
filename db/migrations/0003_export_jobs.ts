import { type Kysely, sql } from 'kysely'

// Async export jobs (docs/contract.md §8, §10): the same runner, leases and idempotency as import jobs. A job
// writes its file under a temporary name and records rows, bytes and SHA-256 when it renames it;
// an export has no checkpoint: a job taken over after its owner died starts its file again.

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('export_jobs')
    .addColumn('id', 'uuid', (column) => column.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('resource', 'text', (column) => column.notNull())
    .addColumn('format', 'text', (column) => column.notNull())
    // Null: every column of the resource, in the order of docs/contract.md §1.
    .addColumn('fields', sql`text[]`)
    .addColumn('filters', 'jsonb', (column) => column.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('compression', 'text', (column) => column.notNull().defaultTo('none'))
    .addColumn('status', 'text', (column) => column.notNull().defaultTo('queued'))
    .addColumn('created_at', 'timestamptz', (column) => column.notNull().defaultTo(sql`now()`))
    .addColumn('started_at', 'timestamptz')
    .addColumn('finished_at', 'timestamptz')
    .addColumn('rows', 'bigint', (column) => column.notNull().defaultTo(0))
    .addColumn('bytes', 'bigint', (column) => column.notNull().defaultTo(0))
    .addColumn('sha256', 'text')
    // The finished file's name in EXPORT_DIR.
    .addColumn('file_name', 'text')
    .addColumn('expires_at', 'timestamptz')
    // When the expired file was deleted.
    .addColumn('file_deleted_at', 'timestamptz')
    .addColumn('error', 'jsonb')
    .addColumn('lease_owner', 'text')
    .addColumn('lease_expires_at', 'timestamptz')
    .addColumn('attempts', 'integer', (column) => column.notNull().defaultTo(0))
    .addColumn('idempotency_key', 'text')
    .addCheckConstraint('export_jobs_resource_check', sql`resource in ('users', 'articles', 'comments')`)
    .addCheckConstraint('export_jobs_format_check', sql`format in ('csv', 'ndjson', 'json')`)
    .addCheckConstraint('export_jobs_compression_check', sql`compression in ('none', 'gzip')`)
    .addCheckConstraint(
      'export_jobs_status_check',
      sql`status in ('queued', 'running', 'completed', 'failed', 'cancelled')`,
    )
    .execute()
  await sql`create index export_jobs_claim_index on export_jobs (created_at) where status in ('queued', 'running')`.execute(
    db,
  )
  await db.schema
    .createIndex('export_jobs_list_index')
    .on('export_jobs')
    .columns(['created_at desc', 'id desc'])
    .execute()
  // The sweeper's look-up: finished files not yet deleted.
  await sql`create index export_jobs_expiry_index on export_jobs (expires_at) where file_deleted_at is null and file_name is not null`.execute(
    db,
  )
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('export_jobs').execute()
}
