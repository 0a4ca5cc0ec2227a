import type { ColumnType } from 'kysely'
import type { ExportTable } from './exports.ts'

/** Row of the `comments` table (docs/contract.md §1). Comments have no natural key: `id` is required. */
export interface CommentsTable {
  id: string
  article_id: string
  user_id: string
  body: string
  created_at: ColumnType<Date, string | undefined, string>
}

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

/** What an export reads of `comments` (see db/exports.ts). Ranges: `_after` inclusive, `_before` exclusive. */
export const commentsExport: ExportTable = {
  table: 'comments',
  columns: { id: 'uuid', article_id: 'uuid', user_id: 'uuid', body: 'text', created_at: 'timestamp' },
  filters: {
    article_id: { column: 'article_id', test: '=' },
    user_id: { column: 'user_id', test: '=' },
    created_after: { column: 'created_at', test: '>=' },
    created_before: { column: 'created_at', test: '<' },
  },
}
