import { Type } from '@sinclair/typebox'
import { type ColumnType, type Generated, sql } from 'kysely'
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
import { body, csvTags, jsonTags, nullableText, RecordValidator, shortText, uuid } from '../app/workers/fields.ts'
import { stringEnum } from '../schemas/common.ts'
import '../schemas/record-formats.ts'
import { defineResource } from './resource.ts'

// Articles: everything that is theirs (docs/contract.md §1–§3). The rest of the service derives
// its routes, schemas and SQL from this descriptor (resources/resource.ts).

/** The columns of an article, in the order of an export. On import they may come in any order. */
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
            'ISO-8601 date and time with a zone (`Z`, `±HH:MM`, `±HHMM` or `±HH`; a space may replace the `T`), at most 6 fractional digits, or null. A draft must not have one. Absent: null for a new article, unchanged on update.',
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

/** Row of the `articles` table (docs/contract.md §1). */
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


const validator = new RecordValidator(ArticleRecordSchema, articleColumns, {
  expected: { slug: 'kebab-case (a-z, 0-9, single hyphens)' },
  rules: [
    {
      field: 'published_at',
      code: 'invalid_state',
      message: 'a draft must not have published_at',
      // Only this record's fields: a record that leaves published_at out but turns a published
      // row into a draft is caught by the upsert, which sees the stored row.
      broken: (row) => row.status === 'draft' && typeof row.published_at === 'string',
    },
  ],
})

/** An article of the upsert's input: the batch's arrays, one row per record. */
interface ArticleInput {
  ord: number
  id: string | null
  slug: string
  title: string
  body: string
  author_id: string
  /** An array literal, or null when absent. */
  tags: string | null
  published_at: string | null
  status: ArticlesTable['status']
  /** Whether the record has published_at (null included). */
  has_published_at: boolean
}

/** The checks a failed article breaks, in the order the report lists them. */
type ArticleCheck = 'unique_violation' | 'foreign_key_violation' | 'invalid_state'

/** The SQL type of each of the batch's arrays (UpsertStatement.input). */
const input = {
  ord: 'int',
  id: 'uuid',
  slug: 'text',
  title: 'text',
  body: 'text',
  author_id: 'uuid',
  tags: 'text',
  published_at: 'timestamptz',
  status: 'text',
  has_published_at: 'boolean',
} satisfies Record<keyof ArticleInput, string>

/**
 * A new article's values, from a record of the batch: `d` in the upsert (a record decided as an
 * insert targets its own id, and no stored row lends it a published_at), `r` in the insert-first
 * statement; in the order of articleColumns. The defaults live here only.
 */
function newArticle(from: 'd' | 'r') {
  const value = (column: keyof ArticleInput) => sql.ref(`${from}.${column}`)
  return [
    sql<string>`coalesce(${value('id')}, gen_random_uuid())`.as('id'),
    sql<string>`${value('slug')}`.as('slug'),
    sql<string>`${value('title')}`.as('title'),
    sql<string>`${value('body')}`.as('body'),
    sql<string>`${value('author_id')}`.as('author_id'),
    sql<string[]>`coalesce(${value('tags')}::text[], '{}')`.as('tags'),
    sql<string | null>`${value('published_at')}`.as('published_at'),
    sql<ArticlesTable['status']>`${value('status')}`.as('status'),
  ]
}

/**
 * The articles upsert (see db/upsert.ts). The natural key is the slug. The author must exist
 * (foreign_key_violation), and the row as stored after the record must not be a draft with
 * published_at (invalid_state).
 */
export const articlesUpsert: UpsertStatement = {
  input,
  insertNew: (batch) =>
    query
      .insertInto('articles')
      .columns(articleColumns)
      .expression(
        query.selectFrom(batchRecords<ArticleInput>(batch, input)).select(newArticle('r')).where(inRange(batch)),
      ),
  build: (batch) =>
    withKeyBlocking(
      query
        .with(
          (cte) => cte('input').materialized(),
          (db) =>
            db
              .selectFrom(batchRecords<ArticleInput>(batch, input))
              .selectAll('r')
              .where(inRange(batch)),
        )
        .with(
          (cte) => cte('located').materialized(),
          (db) =>
            db
              .selectFrom('input as r')
              .leftJoinLateral(
                (eb) =>
                  eb
                    .selectFrom('articles as a')
                    .select(['a.slug', 'a.published_at'])
                    .whereRef('a.id', '=', 'r.id')
                    .limit(literal(1))
                    .as('by_id'),
                (join) => join.onTrue(),
              )
              .leftJoinLateral(
                (eb) =>
                  eb
                    .selectFrom('articles as a')
                    .select(['a.id', 'a.published_at'])
                    .whereRef('a.slug', '=', 'r.slug')
                    .limit(literal(1))
                    .as('by_slug'),
                (join) => join.onTrue(),
              )
              .selectAll('r')
              .select((eb) => [
                'by_id.slug as id_row_slug',
                'by_id.published_at as id_row_published_at',
                'by_slug.id as slug_owner',
                'by_slug.published_at as slug_row_published_at',
                eb
                  .exists(eb.selectFrom('users as u').select(literal(1).as('one')).whereRef('u.id', '=', 'r.author_id'))
                  .as('author_exists'),
              ]),
        )
        .with(
          (cte) => cte('keyed').materialized(),
          (db) =>
            db
              .selectFrom('located as l')
              .selectAll('l')
              .select((eb) => [
                eb('l.id_row_slug', 'is not', null).as('id_exists'),
                eb.fn.coalesce('l.id', 'l.slug_owner').as('target'),
                'l.id_row_slug as old_slug',
                sql<Date | null>`case when l.has_published_at then l.published_at
                  when l.id is not null then l.id_row_published_at
                  else l.slug_row_published_at end`.as('final_published_at'),
              ]),
        )
        // Keys no two records of one statement may share: the row they target, the slug they
        // claim, the slug their target gives up.
        .with('touched', (db) =>
          db
            .selectFrom('keyed')
            .select(['ord', touchedKey('t', 'target')])
            .where('target', 'is not', null)
            .unionAll(db.selectFrom('keyed').select(['ord', touchedKey('s', 'slug')]))
            .unionAll(
              db.selectFrom('keyed').select(['ord', touchedKey('s', 'old_slug')]).whereRef('old_slug', '<>', 'slug'),
            ),
        ),
    )
      .with(
        (cte) => cte('decided').materialized(),
        (db) =>
          db
            .selectFrom('keyed as k')
            .selectAll('k')
            .select(
              sql<ArticleCheck | 'update' | 'insert'>`case
                when k.slug_owner is not null and k.slug_owner is distinct from k.target then 'unique_violation'
                when not k.author_exists then 'foreign_key_violation'
                when k.status = 'draft' and k.final_published_at is not null then 'invalid_state'
                when k.id_exists or (k.id is null and k.slug_owner is not null) then 'update'
                else 'insert'
              end`.as('action'),
            )
            .where(notBlocked('k.ord')),
      )
      .with('updated', (db) =>
        db
          .updateTable('articles as a')
          .from('decided as d')
          .set({
            slug: sql.ref('d.slug'),
            title: sql.ref('d.title'),
            body: sql.ref('d.body'),
            author_id: sql.ref('d.author_id'),
            tags: sql`coalesce(d.tags::text[], a.tags)`,
            published_at: sql.ref('d.final_published_at'),
            status: sql.ref('d.status'),
          })
          .where('d.action', '=', literal('update'))
          .whereRef('a.id', '=', 'd.target')
          .returning(literal(1).as('one')),
      )
      .with('inserted', (db) =>
        db
          .insertInto('articles')
          .columns(articleColumns)
          .expression(db.selectFrom('decided as d').select(newArticle('d')).where('d.action', '=', literal('insert')))
          .returning(literal(1).as('one')),
      )
      .selectNoFrom((eb) => {
        // Every check a failed record breaks is reported (docs/contract.md §7), not only the first.
        const failed = (check: number, code: ArticleCheck, field: string, value: string, message: string) =>
          eb
            .selectFrom('decided')
            .select([
              'ord',
              'id',
              literal(check).as('n'),
              literal(code).as('code'),
              literal(field).as('field'),
              sql<string | null>`${sql.ref(value)}::text`.as('value'),
              literal(message).as('message'),
            ])
            .where('action', 'not in', [literal('insert'), literal('update')])
        const errors = failed(1, 'unique_violation', 'slug', 'slug', 'another article already has this slug')
          .where(sql<boolean>`slug_owner is not null and slug_owner is distinct from target`)
          .unionAll(
            failed(2, 'foreign_key_violation', 'author_id', 'author_id', 'no user has this id').where(
              sql<boolean>`not author_exists`,
            ),
          )
          .unionAll(
            failed(
              3,
              'invalid_state',
              'published_at',
              'final_published_at',
              'a draft must not have published_at (the stored article has one)',
            ).where(sql<boolean>`status = 'draft' and final_published_at is not null`),
          )
        return outcomeColumns(
          eb
            .selectFrom(errors.as('e'))
            .select(
              sql`json_agg(json_build_object('ord', ord, 'id', id, 'code', code, 'field', field, 'value', value,
                'message', message) order by ord, n)`.as('errors'),
            ),
        )
      }),
}

/**
 * The descriptor. Its `validate` checks one article record (docs/contract.md §2): a CSV row (text cells keyed by header) or a parsed JSON
 * object; unknown keys are ignored. The row holds the values to store: short texts and tags
 * trimmed, the body as given, UUIDs in lower case, published_at null when empty or null; absent
 * fields are left undefined (the upsert gives them their defaults).
 */
export default defineResource({
  name: 'articles',
  module: import.meta.url,
  record: ArticleRecordSchema,
  columns: articleColumns,
  validate: (input, source) =>
    validator.outcome(input, {
      id: uuid(input.id),
      slug: shortText(input.slug),
      title: shortText(input.title),
      body: body(input.body),
      author_id: uuid(input.author_id),
      tags: source === 'csv' ? csvTags(input.tags) : jsonTags(input.tags),
      published_at: nullableText(input.published_at),
      status: shortText(input.status),
    }),
  nullableColumns: ['published_at'],
  naturalKey: { column: 'slug', caseInsensitive: false },
  upsert: articlesUpsert,
  examples: [
    {
      id: '6e2d9a4b-8c1f-4b7a-a3e5-0f9d8c7b6a51',
      slug: 'notes-on-the-analytical-engine',
      title: 'Notes on the Analytical Engine',
      body: 'The engine weaves algebraic patterns, just as the loom weaves flowers and leaves.',
      author_id: '1f0b6c1e-3a5d-4e8f-9b2c-7d4e5f6a7b8c',
      tags: ['history', 'computing'],
      published_at: '2024-02-01T12:00:00Z',
      status: 'published',
    },
    // No id: the article with this slug is updated, or a new one is inserted.
    {
      slug: 'a-draft',
      title: 'A draft',
      body: 'Not published yet.',
      author_id: '1f0b6c1e-3a5d-4e8f-9b2c-7d4e5f6a7b8c',
      status: 'draft',
    },
  ],
  export: {
    columns: {
      id: 'uuid',
      slug: 'text',
      title: 'text',
      body: 'text',
      author_id: 'uuid',
      tags: 'tags',
      published_at: 'timestamp',
      status: 'text',
    },
    filters: ArticleExportFiltersSchema,
    // Ranges: `_after` inclusive, `_before` exclusive.
    filterColumns: {
      status: { column: 'status', test: '=' },
      author_id: { column: 'author_id', test: '=' },
      tag: { column: 'tags', test: 'has' },
      published_after: { column: 'published_at', test: '>=' },
      published_before: { column: 'published_at', test: '<' },
    },
  },
})
