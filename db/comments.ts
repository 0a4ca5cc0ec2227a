import type { ColumnType } from 'kysely'

/** Row of the `comments` table (SPEC §1). Comments have no natural key: `id` is required. */
export interface CommentsTable {
  id: string
  article_id: string
  user_id: string
  body: string
  created_at: ColumnType<Date, string | undefined, string>
}
