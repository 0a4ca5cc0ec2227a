import { Type } from '@sinclair/typebox'
import { type ColumnType, sql } from 'kysely'
import { query } from '../db/query.ts'
import {
  batchRecords,
  inRange,
  literal,
  notBlocked,
  outcomeColumns,
  touchedKey,
  type UpsertStatement,
  withKeyBlocking,
} from '../db/upsert.ts'
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
          'ISO-8601 date and time with a zone (`Z`, `±HH:MM`, `±HHMM` or `±HH`; a space may replace the `T`), at most 6 fractional digits. Absent: now() for a new comment, unchanged on update.',
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

/** A comment of the upsert's input: the batch's arrays, one row per record. */
interface CommentInput {
  ord: number
  id: string
  article_id: string
  user_id: string
  body: string
  created_at: string | null
}

/** The SQL type of each of the batch's arrays (UpsertStatement.input). */
const input = {
  ord: 'int',
  id: 'uuid',
  article_id: 'uuid',
  user_id: 'uuid',
  body: 'text',
  created_at: 'timestamptz',
} satisfies Record<keyof CommentInput, string>

/**
 * The comments upsert (see db/upsert.ts). Comments have no natural key: the id (required)
 * decides between insert and update, and is the one key a record touches. The article and the
 * user must exist; a record missing both gets one foreign_key_violation per field.
 */
/**
 * A new comment's values, from a record of the batch: `d` in the upsert, `r` in the insert-first
 * statement; in the order of commentColumns. The defaults live here only.
 */
function newComment(from: 'd' | 'r') {
  const value = (column: keyof CommentInput) => sql.ref(`${from}.${column}`)
  return [
    sql<string>`${value('id')}`.as('id'),
    sql<string>`${value('article_id')}`.as('article_id'),
    sql<string>`${value('user_id')}`.as('user_id'),
    sql<string>`${value('body')}`.as('body'),
    sql<string>`coalesce(${value('created_at')}, now())`.as('created_at'),
  ]
}

export const commentsUpsert: UpsertStatement = {
  input,
  insertNew: (batch) =>
    query
      .insertInto('comments')
      .columns(commentColumns)
      .expression(
        query.selectFrom(batchRecords<CommentInput>(batch, input)).select(newComment('r')).where(inRange(batch)),
      ),
  build: (batch) =>
    withKeyBlocking(
      query
        .with(
          (cte) => cte('input').materialized(),
          (db) =>
            db
              .selectFrom(batchRecords<CommentInput>(batch, input))
              .selectAll('r')
              .where(inRange(batch)),
        )
        .with(
          (cte) => cte('keyed').materialized(),
          (db) =>
            db
              .selectFrom('input as r')
              .selectAll('r')
              .select((eb) => [
                eb.exists(eb.selectFrom('comments as c').select(literal(1).as('one')).whereRef('c.id', '=', 'r.id')).as('id_exists'),
                eb
                  .exists(eb.selectFrom('articles as a').select(literal(1).as('one')).whereRef('a.id', '=', 'r.article_id'))
                  .as('article_exists'),
                eb
                  .exists(eb.selectFrom('users as u').select(literal(1).as('one')).whereRef('u.id', '=', 'r.user_id'))
                  .as('user_exists'),
              ]),
        )
        .with('touched', (db) => db.selectFrom('keyed').select(['ord', touchedKey('t', 'id')])),
    )
      .with(
        (cte) => cte('decided').materialized(),
        (db) =>
          db
            .selectFrom('keyed as k')
            .selectAll('k')
            .select(
              sql<'foreign_key_violation' | 'update' | 'insert'>`case
                when not (k.article_exists and k.user_exists) then 'foreign_key_violation'
                when k.id_exists then 'update'
                else 'insert'
              end`.as('action'),
            )
            .where(notBlocked('k.ord')),
      )
      .with('updated', (db) =>
        db
          .updateTable('comments as c')
          .from('decided as d')
          .set({
            article_id: sql.ref('d.article_id'),
            user_id: sql.ref('d.user_id'),
            body: sql.ref('d.body'),
            created_at: sql`coalesce(d.created_at, c.created_at)`,
          })
          .where('d.action', '=', literal('update'))
          .whereRef('c.id', '=', 'd.id')
          .returning(literal(1).as('one')),
      )
      .with('inserted', (db) =>
        db
          .insertInto('comments')
          .columns(commentColumns)
          .expression(db.selectFrom('decided as d').select(newComment('d')).where('d.action', '=', literal('insert')))
          .returning(literal(1).as('one')),
      )
      .selectNoFrom((eb) => {
        const missing = (field: 'article_id' | 'user_id', exists: 'article_exists' | 'user_exists', message: string) =>
          eb
            .selectFrom('decided')
            .select([
              'ord',
              'id',
              literal('foreign_key_violation').as('code'),
              literal(field).as('field'),
              sql<string>`${sql.ref(field)}::text`.as('value'),
              literal(message).as('message'),
            ])
            .where('action', '=', literal('foreign_key_violation'))
            .where(sql<boolean>`not ${sql.ref(exists)}`)
        const errors = missing('article_id', 'article_exists', 'no article has this id').unionAll(
          missing('user_id', 'user_exists', 'no user has this id'),
        )
        return outcomeColumns(eb.selectFrom(errors.as('e')).select(sql`json_agg(e order by e.ord)`.as('errors')))
      }),
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
  examples: [
    {
      id: '9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d',
      article_id: '6e2d9a4b-8c1f-4b7a-a3e5-0f9d8c7b6a51',
      user_id: '1f0b6c1e-3a5d-4e8f-9b2c-7d4e5f6a7b8c',
      body: 'A fine read.',
      created_at: '2024-02-02T08:00:00+01:00',
    },
  ],
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
