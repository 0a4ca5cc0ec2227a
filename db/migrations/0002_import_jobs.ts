import { type Kysely, sql } from 'kysely'

// Import jobs live in PostgreSQL (docs/contract.md §10): a job's row holds its counters and its checkpoint,
// which every batch advances in the same transaction as its data and its error rows, so a crash
// at any moment loses nothing and counts nothing twice.

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('import_jobs')
    .addColumn('id', 'uuid', (column) => column.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('resource', 'text', (column) => column.notNull())
    // Null until known: a URL job without a declared format learns it from the download.
    .addColumn('format', 'text')
    .addColumn('status', 'text', (column) => column.notNull().defaultTo('queued'))
    .addColumn('dry_run', 'boolean', (column) => column.notNull().defaultTo(false))
    .addColumn('source_type', 'text', (column) => column.notNull())
    .addColumn('source_filename', 'text')
    .addColumn('source_url', 'text')
    // The file in IMPORT_DIR (uploaded, or downloaded from source_url by the job).
    .addColumn('source_path', 'text')
    .addColumn('source_size_bytes', 'bigint')
    .addColumn('source_sha256', 'text')
    .addColumn('batch_size', 'integer', (column) => column.notNull())
    .addColumn('created_at', 'timestamptz', (column) => column.notNull().defaultTo(sql`now()`))
    .addColumn('started_at', 'timestamptz')
    .addColumn('finished_at', 'timestamptz')
    .addColumn('processed', 'bigint', (column) => column.notNull().defaultTo(0))
    .addColumn('inserted', 'bigint', (column) => column.notNull().defaultTo(0))
    .addColumn('updated', 'bigint', (column) => column.notNull().defaultTo(0))
    .addColumn('failed', 'bigint', (column) => column.notNull().defaultTo(0))
    .addColumn('errors_stored', 'bigint', (column) => column.notNull().defaultTo(0))
    .addColumn('bytes_read', 'bigint', (column) => column.notNull().defaultTo(0))
    .addColumn('bytes_total', 'bigint')
    // Records (and the source line and byte offset after them) that are committed: a resumed job
    // continues right after.
    .addColumn('checkpoint_record', 'bigint', (column) => column.notNull().defaultTo(0))
    .addColumn('checkpoint_line', 'bigint', (column) => column.notNull().defaultTo(0))
    .addColumn('checkpoint_offset', 'bigint', (column) => column.notNull().defaultTo(0))
    .addColumn('warnings', sql`text[]`, (column) => column.notNull().defaultTo(sql`'{}'::text[]`))
    .addColumn('error', 'jsonb')
    .addColumn('cancel_requested', 'boolean', (column) => column.notNull().defaultTo(false))
    .addColumn('lease_owner', 'text')
    .addColumn('lease_expires_at', 'timestamptz')
    .addColumn('attempts', 'integer', (column) => column.notNull().defaultTo(0))
    .addColumn('idempotency_key', 'text')
    .addCheckConstraint('import_jobs_resource_check', sql`resource in ('users', 'articles', 'comments')`)
    .addCheckConstraint('import_jobs_format_check', sql`format in ('csv', 'ndjson', 'json')`)
    .addCheckConstraint(
      'import_jobs_status_check',
      sql`status in ('queued', 'running', 'completed', 'failed', 'cancelled')`,
    )
    .addCheckConstraint('import_jobs_source_type_check', sql`source_type in ('upload', 'url')`)
    // docs/contract.md §6: processed = inserted + updated + failed at every moment.
    .addCheckConstraint('import_jobs_counters_check', sql`processed = inserted + updated + failed`)
    .execute()
  // The runner's claim query: the oldest queued job, or a running one whose lease expired.
  await sql`create index import_jobs_claim_index on import_jobs (created_at) where status in ('queued', 'running')`.execute(
    db,
  )
  await db.schema
    .createIndex('import_jobs_list_index')
    .on('import_jobs')
    .columns(['created_at desc', 'id desc'])
    .execute()

  await db.schema
    .createTable('import_errors')
    .addColumn('job_id', 'uuid', (column) => column.notNull().references('import_jobs.id').onDelete('cascade'))
    .addColumn('record', 'bigint', (column) => column.notNull())
    .addColumn('seq', 'integer', (column) => column.notNull())
    .addColumn('line', 'bigint', (column) => column.notNull())
    .addColumn('record_id', 'text')
    .addColumn('field', 'text')
    .addColumn('code', 'text', (column) => column.notNull())
    .addColumn('message', 'text', (column) => column.notNull())
    .addColumn('value', 'text')
    // Where the record's bytes are in the (decompressed) source: failed-records copies them.
    .addColumn('byte_offset', 'bigint', (column) => column.notNull())
    .addColumn('byte_length', 'bigint', (column) => column.notNull())
    .addPrimaryKeyConstraint('import_errors_pkey', ['job_id', 'record', 'seq'])
    .execute()

  // Idempotency-Key (docs/contract.md §9): the primary key makes the first request the only creator, also
  // under concurrency; a key is `in_flight` while its request uploads, then names its job.
  await db.schema
    .createTable('idempotency_keys')
    .addColumn('scope', 'text', (column) => column.notNull())
    .addColumn('key', 'text', (column) => column.notNull())
    .addColumn('state', 'text', (column) => column.notNull())
    .addColumn('fingerprint', 'text')
    .addColumn('job_id', 'uuid')
    .addColumn('created_at', 'timestamptz', (column) => column.notNull().defaultTo(sql`now()`))
    .addColumn('heartbeat_at', 'timestamptz', (column) => column.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (column) => column.notNull())
    .addPrimaryKeyConstraint('idempotency_keys_pkey', ['scope', 'key'])
    .addCheckConstraint('idempotency_keys_state_check', sql`state in ('in_flight', 'completed')`)
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('idempotency_keys').execute()
  await db.schema.dropTable('import_errors').execute()
  await db.schema.dropTable('import_jobs').execute()
}
