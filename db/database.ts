import type { ArticlesTable } from './articles.ts'
import type { CommentsTable } from './comments.ts'
import type { ExportJobsTable } from './exports.ts'
import type { ImportErrorsTable, ImportJobsTable } from './imports.ts'
import type { UsersTable } from './users.ts'

/** The Kysely view of the schema: one entry per table, kept in step with db/migrations/. */
export interface Database {
  users: UsersTable
  articles: ArticlesTable
  comments: CommentsTable
  import_jobs: ImportJobsTable
  import_errors: ImportErrorsTable
  export_jobs: ExportJobsTable
}
