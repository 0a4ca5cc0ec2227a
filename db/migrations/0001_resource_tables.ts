import { type Kysely, sql } from 'kysely'

// The three resource tables of docs/contract.md §1, with every rule the database can hold itself, so that
// no code path (a bulk upsert, a psql session, a plain COPY) can store a row the API would
// reject. Migrations never import application code: they must replay identically forever.

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('users')
    .addColumn('id', 'uuid', (column) => column.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('email', 'text', (column) => column.notNull())
    .addColumn('name', 'text', (column) => column.notNull())
    .addColumn('role', 'text', (column) => column.notNull())
    .addColumn('active', 'boolean', (column) => column.notNull().defaultTo(true))
    .addColumn('created_at', 'timestamptz', (column) => column.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (column) => column.notNull().defaultTo(sql`now()`))
    .addCheckConstraint('users_role_check', sql`role in ('admin', 'editor', 'author', 'reader')`)
    .addCheckConstraint('users_email_length_check', sql`char_length(email) <= 254`)
    .addCheckConstraint('users_name_not_blank_check', sql`btrim(name) <> ''`)
    .execute()
  // Emails are unique case-insensitively (docs/contract.md §1): the index is on lower(email).
  await sql`create unique index users_email_lower_key on users (lower(email))`.execute(db)

  await db.schema
    .createTable('articles')
    .addColumn('id', 'uuid', (column) => column.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('slug', 'text', (column) => column.notNull().unique())
    .addColumn('title', 'text', (column) => column.notNull())
    .addColumn('body', 'text', (column) => column.notNull())
    .addColumn('author_id', 'uuid', (column) => column.notNull().references('users.id'))
    .addColumn('tags', sql`text[]`, (column) => column.notNull().defaultTo(sql`'{}'::text[]`))
    .addColumn('published_at', 'timestamptz')
    .addColumn('status', 'text', (column) => column.notNull())
    .addCheckConstraint('articles_status_check', sql`status in ('draft', 'published')`)
    .addCheckConstraint('articles_draft_unpublished_check', sql`status <> 'draft' or published_at is null`)
    .addCheckConstraint('articles_slug_format_check', sql`slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'`)
    .execute()
  // Foreign keys are checked on every insert; these indexes keep the reverse lookups (deleting
  // a user, filtering exports by author) from scanning the whole table.
  await db.schema.createIndex('articles_author_id_index').on('articles').column('author_id').execute()

  await db.schema
    .createTable('comments')
    .addColumn('id', 'uuid', (column) => column.primaryKey())
    .addColumn('article_id', 'uuid', (column) => column.notNull().references('articles.id'))
    .addColumn('user_id', 'uuid', (column) => column.notNull().references('users.id'))
    .addColumn('body', 'text', (column) => column.notNull())
    .addColumn('created_at', 'timestamptz', (column) => column.notNull().defaultTo(sql`now()`))
    .addCheckConstraint('comments_body_length_check', sql`char_length(body) <= 10000`)
    .execute()
  await db.schema.createIndex('comments_article_id_index').on('comments').column('article_id').execute()
  await db.schema.createIndex('comments_user_id_index').on('comments').column('user_id').execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('comments').execute()
  await db.schema.dropTable('articles').execute()
  await db.schema.dropTable('users').execute()
}
