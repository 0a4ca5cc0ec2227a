import { type Kysely, sql } from 'kysely'

// What object storage (STORAGE=s3, app/storage/) needs of the database:
// - export_jobs.not_before: an export handed back because the store did not take its file is not
//   claimed again at once, so runners do not spin on a store that is away;
// - uploads: direct uploads (POST /api/v1/uploads): the object a client puts into the store with
//   presigned URLs, one PUT or the parts of a multipart upload, until it is completed (then an
//   import may name it) or abandoned (the sweeper aborts it once it expired).

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('export_jobs').addColumn('not_before', 'timestamptz').execute()
  await db.schema
    .createTable('uploads')
    .addColumn('id', 'uuid', (column) => column.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('object_key', 'text', (column) => column.notNull().unique())
    .addColumn('multipart_upload_id', 'text')
    .addColumn('part_bytes', 'bigint')
    .addColumn('parts', 'integer', (column) => column.notNull())
    .addColumn('filename', 'text')
    .addColumn('content_type', 'text')
    .addColumn('size_bytes', 'bigint', (column) => column.notNull())
    .addColumn('status', 'text', (column) =>
      column.notNull().defaultTo('pending').check(sql`status in ('pending', 'completed', 'aborted')`),
    )
    .addColumn('created_at', 'timestamptz', (column) => column.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (column) => column.notNull())
    .addColumn('completed_at', 'timestamptz')
    .execute()
  await db.schema
    .createIndex('uploads_pending_expiry')
    .on('uploads')
    .column('expires_at')
    .where(sql.ref('status'), '=', 'pending')
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('uploads').execute()
  await db.schema.alterTable('export_jobs').dropColumn('not_before').execute()
}
