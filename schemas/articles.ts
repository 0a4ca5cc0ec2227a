import { type Static, Type } from '@sinclair/typebox'
import { stringEnum } from './common.ts'
import './record-formats.ts'

/**
 * The CSV columns of an article, in the order of an export (docs/contract.md §1). On import they may
 * come in any order.
 */
export const articleColumns = ['id', 'slug', 'title', 'body', 'author_id', 'tags', 'published_at', 'status'] as const

export const articleStatuses = ['draft', 'published'] as const

/**
 * One article of an import, as a JSON object (NDJSON line or element of a JSON array); a CSV row
 * is read as this object after its cells are converted. Values are trimmed first; an empty string
 * or null of an optional field means absent, except `published_at`, where both mean null.
 */
export const ArticleRecordSchema = Type.Object(
  {
    id: Type.Optional(
      Type.String({
        format: 'uuid',
        description:
          'The article’s UUID, any case (stored in lower case). Absent: the article with the same slug is updated, or a new article is inserted with a new id.',
      }),
    ),
    slug: Type.String({
      pattern: '^[a-z0-9]+(-[a-z0-9]+)*$',
      description: 'Required. Kebab-case (a-z, 0-9, single hyphens), unique.',
    }),
    title: Type.String({ minLength: 1, description: 'Required, non-blank. Stored trimmed.' }),
    body: Type.String({
      minLength: 1,
      description: 'Required, non-blank. Stored exactly as given (not trimmed).',
    }),
    author_id: Type.String({ format: 'uuid', description: 'Required. The UUID of an existing user, any case.' }),
    tags: Type.Optional(
      Type.Array(Type.String({ minLength: 1, description: 'A tag: non-blank, stored trimmed.' }), {
        description:
          'A JSON array of strings; in CSV a JSON array literal such as `["a","b"]` or tags separated by `|` (`a|b`). Absent: [] for a new article, unchanged on update.',
      }),
    ),
    published_at: Type.Optional(
      Type.Union(
        [
          Type.String({ format: 'date-time-with-zone' }),
          Type.Null({ description: 'Clears the publication time (also an empty string, or an empty CSV cell).' }),
        ],
        {
          description:
            'ISO-8601 date and time with a zone (`Z`, `±HH:MM` or `±HHMM`), at most 6 fractional digits, or null. A draft must not have one. Absent: null for a new article, unchanged on update.',
        },
      ),
    ),
    // A union of literals (not stringEnum): the compiled TypeBox check only knows its own kinds.
    status: Type.Union(
      articleStatuses.map((status) => Type.Literal(status)),
      { description: 'Required. `draft` or `published`.' },
    ),
  },
  {
    $id: 'ArticleRecord',
    description: 'One article record of an import. Unknown keys (CSV columns) are ignored.',
    additionalProperties: true,
  },
)

export type ArticleRecord = Static<typeof ArticleRecordSchema>

articleColumns satisfies readonly (keyof ArticleRecord)[]

/** Filters of an articles export (querystring of its stream, `filters` of an async export). */
export const ArticleExportFiltersSchema = Type.Object(
  {
    status: Type.Optional(stringEnum(articleStatuses, { description: 'Only drafts or only published articles.' })),
    author_id: Type.Optional(Type.String({ format: 'uuid', description: 'Only this author’s articles.' })),
    tag: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 200,
        pattern: '^[^\\u0000]+$',
        description: 'Only articles with this tag (exact, case-sensitive).',
      }),
    ),
    published_after: Type.Optional(
      Type.String({
        format: 'date-time-with-zone',
        description: 'published_at at or after this (drafts never match).',
      }),
    ),
    published_before: Type.Optional(
      Type.String({ format: 'date-time-with-zone', description: 'published_at before this (drafts never match).' }),
    ),
  },
  { $id: 'ArticleExportFilters', additionalProperties: false },
)
