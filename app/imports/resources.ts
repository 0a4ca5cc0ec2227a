import { articlesUpsert } from '../../db/articles.ts'
import { commentsUpsert } from '../../db/comments.ts'
import type { UpsertStatement } from '../../db/upsert.ts'
import { usersUpsert } from '../../db/users.ts'
import { ArticleRecordSchema, articleColumns } from '../../schemas/articles.ts'
import { CommentRecordSchema, commentColumns } from '../../schemas/comments.ts'
import { UserRecordSchema, userColumns } from '../../schemas/users.ts'

/**
 * What the import pipeline needs to know of a resource, on the main thread. Its validation lives
 * in app/workers/<name>.ts (loaded by name in the worker threads), its record schema in
 * schemas/<name>.ts, its upsert in db/<name>.ts.
 */
export interface ImportResource {
  name: string
  /** Columns in CSV order; also the order of the upsert's array parameters. */
  columns: readonly string[]
  /** Fields every record must carry: a CSV header without one of them is refused. */
  required: readonly string[]
  /** Columns where an explicit null differs from absent (a presence array is sent too). */
  nullableColumns: readonly string[]
  /** The natural key (docs/contract.md §1), if any. */
  naturalKey?: { column: string; caseInsensitive: boolean }
  upsert: UpsertStatement
}

export const importResources: Record<string, ImportResource> = {
  users: {
    name: 'users',
    columns: userColumns,
    required: UserRecordSchema.required ?? [],
    nullableColumns: [],
    naturalKey: { column: 'email', caseInsensitive: true },
    upsert: usersUpsert,
  },
  articles: {
    name: 'articles',
    columns: articleColumns,
    required: ArticleRecordSchema.required ?? [],
    nullableColumns: ['published_at'],
    naturalKey: { column: 'slug', caseInsensitive: false },
    upsert: articlesUpsert,
  },
  comments: {
    name: 'comments',
    columns: commentColumns,
    required: CommentRecordSchema.required ?? [],
    nullableColumns: [],
    upsert: commentsUpsert,
  },
}

export const resourceNames = Object.keys(importResources) as readonly string[]
