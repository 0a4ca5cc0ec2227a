import { type Static, Type } from '@sinclair/typebox'
import './record-formats.ts'

/**
 * The CSV columns of a comment, in the order of an export (docs/contract.md §1). On import they may
 * come in any order.
 */
export const commentColumns = ['id', 'article_id', 'user_id', 'body', 'created_at'] as const

/** Most whitespace-separated words in a comment body (JSON Schema cannot say it; the import checks it). */
export const COMMENT_BODY_MAX_WORDS = 500

/**
 * One comment of an import, as a JSON object (NDJSON line or element of a JSON array); a CSV row
 * is read as this object. Values are trimmed first; an empty string or null of an optional field
 * means absent. Comments have no natural key, so every record carries its id.
 */
export const CommentRecordSchema = Type.Object(
  {
    id: Type.String({
      format: 'uuid',
      description: 'Required. The comment’s UUID, any case (stored in lower case): the comment is updated or inserted.',
    }),
    article_id: Type.String({ format: 'uuid', description: 'Required. The UUID of an existing article, any case.' }),
    user_id: Type.String({ format: 'uuid', description: 'Required. The UUID of an existing user, any case.' }),
    body: Type.String({
      minLength: 1,
      maxLength: 10_000,
      description: `Required, non-blank; at most 10,000 characters (Unicode code points) and at most ${COMMENT_BODY_MAX_WORDS} whitespace-separated words. Stored exactly as given (not trimmed).`,
    }),
    created_at: Type.Optional(
      Type.String({
        format: 'date-time-with-zone',
        description:
          'ISO-8601 date and time with a zone (`Z`, `±HH:MM` or `±HHMM`), at most 6 fractional digits. Absent: now() for a new comment, unchanged on update.',
      }),
    ),
  },
  {
    $id: 'CommentRecord',
    description: 'One comment record of an import. Unknown keys (CSV columns) are ignored.',
    additionalProperties: true,
  },
)

export type CommentRecord = Static<typeof CommentRecordSchema>

commentColumns satisfies readonly (keyof CommentRecord)[]

/** Filters of a comments export (querystring of its stream, `filters` of an async export). */
export const CommentExportFiltersSchema = Type.Object(
  {
    article_id: Type.Optional(Type.String({ format: 'uuid', description: 'Only comments on this article.' })),
    user_id: Type.Optional(Type.String({ format: 'uuid', description: 'Only this user’s comments.' })),
    created_after: Type.Optional(
      Type.String({ format: 'date-time-with-zone', description: 'created_at at or after this.' }),
    ),
    created_before: Type.Optional(
      Type.String({ format: 'date-time-with-zone', description: 'created_at before this.' }),
    ),
  },
  { $id: 'CommentExportFilters', additionalProperties: false },
)
