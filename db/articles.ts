import type { ColumnType, Generated } from 'kysely'

/** Row of the `articles` table (SPEC §1). */
export interface ArticlesTable {
  id: Generated<string>
  slug: string
  title: string
  body: string
  author_id: string
  tags: Generated<string[]>
  published_at: ColumnType<Date | null, string | null | undefined, string | null>
  status: 'draft' | 'published'
}
