import type { Kysely } from 'kysely'

// export_jobs.downloaded_at: when the file was first delivered (a download answered 200, 206 or
// 304). The sweeper then tells an export that expired unread from one that served its purpose
// (bulkio_exports_expired_total{fetched}), which an alert watches.

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('export_jobs').addColumn('downloaded_at', 'timestamptz').execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('export_jobs').dropColumn('downloaded_at').execute()
}
