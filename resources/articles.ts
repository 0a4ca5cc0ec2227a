import { Type } from '@sinclair/typebox'
import type { ColumnType, Generated } from 'kysely'
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

/**
 * The articles upsert (see db/upsert.ts). Parameters: ord, id, slug, title, body, author_id,
 * tags (each an array literal), published_at, status, published_at presence (arrays), then the
 * ordinal range. The natural key is the slug. The author must exist (foreign_key_violation), and
 * the row as stored after the record must not be a draft with published_at (invalid_state).
 */
export const articlesUpsert = {
  text: `
with input as materialized (
  select * from unnest($1::int[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::text[], $8::timestamptz[], $9::text[], $10::boolean[])
    as r(ord, id, slug, title, body, author_id, tags, published_at, status, has_published_at)
  where r.ord >= $11 and r.ord < $12
),
located as materialized (
  select r.*, by_id.slug as id_row_slug, by_id.published_at as id_row_published_at,
    by_slug.id as slug_owner, by_slug.published_at as slug_row_published_at,
    exists (select 1 from users u where u.id = r.author_id) as author_exists
  from input r
  left join lateral (select a.slug, a.published_at from articles a where a.id = r.id limit 1) by_id on true
  left join lateral (select a.id, a.published_at from articles a where a.slug = r.slug limit 1) by_slug on true
),
keyed as materialized (
  select l.*, l.id_row_slug is not null as id_exists, coalesce(l.id, l.slug_owner) as target,
    l.id_row_slug as old_slug,
    case when l.has_published_at then l.published_at
      when l.id is not null then l.id_row_published_at
      else l.slug_row_published_at end as final_published_at
  from located l
),
-- Keys no two records of one statement may share (see resources/users.ts): target row, claimed slug,
-- the slug the target gives up.
touched as (
  select ord, 't' || target::text collate "C" as k from keyed where target is not null
  union all
  select ord, 's' || slug collate "C" from keyed
  union all
  select ord, 's' || old_slug collate "C" from keyed where old_slug <> slug
),
repeated as (select k, min(ord) as first from touched group by k having count(*) > 1),
blocked as (select min(t.ord) as at from touched t join repeated r on r.k = t.k and t.ord > r.first),
decided as materialized (
  select k.*, case
      when k.slug_owner is not null and k.slug_owner is distinct from k.target then 'unique_violation'
      when not k.author_exists then 'foreign_key_violation'
      when k.status = 'draft' and k.final_published_at is not null then 'invalid_state'
      when k.id_exists or (k.id is null and k.slug_owner is not null) then 'update'
      else 'insert'
    end as action
  from keyed k
  where k.ord < coalesce((select at from blocked), 2147483647)
),
updated as (
  update articles a set slug = d.slug, title = d.title, body = d.body, author_id = d.author_id,
    tags = coalesce(d.tags::text[], a.tags),
    published_at = d.final_published_at,
    status = d.status
  from decided d
  where d.action = 'update' and a.id = d.target
  returning 1
),
inserted as (
  insert into articles (id, slug, title, body, author_id, tags, published_at, status)
  select coalesce(d.target, gen_random_uuid()), d.slug, d.title, d.body, d.author_id,
    coalesce(d.tags::text[], '{}'), d.final_published_at, d.status
  from decided d
  where d.action = 'insert'
  returning 1
)
select (select count(*) from inserted)::int as inserted, (select count(*) from updated)::int as updated,
  -- every check a failed record breaks is reported (docs/contract.md §7), not only the first
  coalesce((select json_agg(json_build_object('ord', ord, 'id', id, 'code', code, 'field', field, 'value', value,
      'message', message) order by ord, n) from (
      select ord, id, 1 as n, 'unique_violation' as code, 'slug' as field, slug as value,
        'another article already has this slug' as message
      from decided where action not in ('insert', 'update') and slug_owner is not null and slug_owner is distinct from target
      union all
      select ord, id, 2, 'foreign_key_violation', 'author_id', author_id::text, 'no user has this id'
      from decided where action not in ('insert', 'update') and not author_exists
      union all
      select ord, id, 3, 'invalid_state', 'published_at', final_published_at::text,
        'a draft must not have published_at (the stored article has one)'
      from decided where action not in ('insert', 'update') and status = 'draft' and final_published_at is not null
    ) e), '[]') as errors,
  (select at from blocked) as next,
  -- The keys this statement read or wrote, as 64-bit hashes: a concurrent batch that shares
  -- none could not see it (a hash collision only costs a needless rerun).
  (select string_agg(int8send(hashtextextended(k, 0)), ''::bytea) from touched t
    where t.ord < coalesce((select at from blocked), 2147483647)) as touched`,
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
