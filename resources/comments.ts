import { Type } from '@sinclair/typebox'
import type { ColumnType } from 'kysely'
import { body, hasMoreWordsThan, RecordValidator, shortText, uuid } from '../app/workers/fields.ts'
import '../schemas/record-formats.ts'
import { defineResource } from './resource.ts'

// Comments: everything that is theirs (docs/contract.md §1–§3). The rest of the service derives
// its routes, schemas and SQL from this descriptor (resources/resource.ts).

/** The columns of a comment, in the order of an export. On import they may come in any order. */
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

/** Row of the `comments` table (docs/contract.md §1). Comments have no natural key: `id` is required. */
export interface CommentsTable {
  id: string
  article_id: string
  user_id: string
  body: string
  created_at: ColumnType<Date, string | undefined, string>
}


const validator = new RecordValidator(CommentRecordSchema, commentColumns, {
  rules: [
    {
      field: 'body',
      code: 'too_long',
      message: `must have at most ${COMMENT_BODY_MAX_WORDS} words`,
      broken: (row) => typeof row.body === 'string' && hasMoreWordsThan(row.body, COMMENT_BODY_MAX_WORDS),
    },
  ],
})

/**
 * The comments upsert (see db/upsert.ts). Parameters: ord, id, article_id, user_id, body,
 * created_at (arrays), then the ordinal range. Comments have no natural key: the id (required)
 * decides between insert and update. The article and the user must exist; a record missing both
 * gets one foreign_key_violation per field.
 */
export const commentsUpsert = {
  text: `
with input as materialized (
  select * from unnest($1::int[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::timestamptz[])
    as r(ord, id, article_id, user_id, body, created_at)
  where r.ord >= $7 and r.ord < $8
),
keyed as materialized (
  select r.*,
    exists (select 1 from comments c where c.id = r.id) as id_exists,
    exists (select 1 from articles a where a.id = r.article_id) as article_exists,
    exists (select 1 from users u where u.id = r.user_id) as user_exists
  from input r
),
repeated as (select id, min(ord) as first from keyed group by id having count(*) > 1),
blocked as (select min(k.ord) as at from keyed k join repeated r on r.id = k.id and k.ord > r.first),
decided as materialized (
  select k.*, case
      when not (k.article_exists and k.user_exists) then 'foreign_key_violation'
      when k.id_exists then 'update'
      else 'insert'
    end as action
  from keyed k
  where k.ord < coalesce((select at from blocked), 2147483647)
),
updated as (
  update comments c set article_id = d.article_id, user_id = d.user_id, body = d.body,
    created_at = coalesce(d.created_at, c.created_at)
  from decided d
  where d.action = 'update' and c.id = d.id
  returning 1
),
inserted as (
  insert into comments (id, article_id, user_id, body, created_at)
  select d.id, d.article_id, d.user_id, d.body, coalesce(d.created_at, now())
  from decided d
  where d.action = 'insert'
  returning 1
)
select (select count(*) from inserted)::int as inserted, (select count(*) from updated)::int as updated,
  coalesce((select json_agg(e order by e.ord) from (
      select ord, id, 'foreign_key_violation' as code, 'article_id' as field, article_id::text as value,
        'no article has this id' as message
      from decided where action = 'foreign_key_violation' and not article_exists
      union all
      select ord, id, 'foreign_key_violation', 'user_id', user_id::text, 'no user has this id'
      from decided where action = 'foreign_key_violation' and not user_exists
    ) e), '[]') as errors,
  (select at from blocked) as next,
  -- The keys this statement read or wrote, as 64-bit hashes: a concurrent batch that shares
  -- none could not see it (a hash collision only costs a needless rerun).
  (select string_agg(int8send(hashtextextended(id::text, 0)), ''::bytea) from keyed
    where ord < coalesce((select at from blocked), 2147483647)) as touched`,
}

/**
 * The descriptor. Its `validate` checks one comment record (docs/contract.md §2): a CSV row (text cells keyed by header) or a parsed JSON
 * object; unknown keys are ignored. Every field is text, so CSV and JSON are read alike. The row
 * holds the values to store: UUIDs in lower case, the body as given, created_at trimmed (left
 * undefined when absent).
 */
export default defineResource({
  name: 'comments',
  module: import.meta.url,
  record: CommentRecordSchema,
  columns: commentColumns,
  // Every field is text, so CSV and JSON are read alike.
  validate: (input) =>
    validator.outcome(input, {
      id: uuid(input.id),
      article_id: uuid(input.article_id),
      user_id: uuid(input.user_id),
      body: body(input.body),
      created_at: shortText(input.created_at),
    }),
  upsert: commentsUpsert,
  export: {
    columns: { id: 'uuid', article_id: 'uuid', user_id: 'uuid', body: 'text', created_at: 'timestamp' },
    filters: CommentExportFiltersSchema,
    // Ranges: `_after` inclusive, `_before` exclusive.
    filterColumns: {
      article_id: { column: 'article_id', test: '=' },
      user_id: { column: 'user_id', test: '=' },
      created_after: { column: 'created_at', test: '>=' },
      created_before: { column: 'created_at', test: '<' },
    },
  },
})
