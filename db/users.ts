import type { ColumnType, Generated } from 'kysely'

/** Row of the `users` table (SPEC §1). Timestamps are read as Date and written as ISO strings. */
export interface UsersTable {
  id: Generated<string>
  email: string
  name: string
  role: 'admin' | 'editor' | 'author' | 'reader'
  active: Generated<boolean>
  created_at: ColumnType<Date, string | undefined, string>
  updated_at: ColumnType<Date, string | undefined, string>
}
