import type { ArticlesTable } from '../resources/articles.ts'
import type { CommentsTable } from '../resources/comments.ts'
import type { UsersTable } from '../resources/users.ts'
import type { ExportJobsTable } from './exports.ts'
import type { ImportErrorsTable, ImportJobsTable } from './imports.ts'

/**
 * The Kysely view of the schema: one entry per table, kept in step with db/migrations/. The
 * resources' tables are written by their descriptors' SQL (resources/); they are here for
 * queries that read them, such as tests'.
 */
export interface Database {
  users: UsersTable
  articles: ArticlesTable
  comments: CommentsTable
  import_jobs: ImportJobsTable
  import_errors: ImportErrorsTable
  export_jobs: ExportJobsTable
}
