import { type Kysely, sql } from 'kysely'

// The table of the test resource `tags` (test/resources/tags/tags.ts). Named to sort after the
// service's own migrations, which the test database already has.

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('tags')
    .addColumn('id', 'uuid', (column) => column.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('name', 'text', (column) => column.notNull().unique())
    .addColumn('color', 'text')
    .addColumn('created_at', 'timestamptz', (column) => column.notNull().defaultTo(sql`now()`))
    .addCheckConstraint('tags_color_check', sql`color ~ '^#[0-9a-f]{6}$'`)
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('tags').execute()
}
