import { Type } from '@sinclair/typebox'
import { RecordValidator, shortText, uuid } from '../../../app/workers/fields.ts'
import { defineResource } from '../../../resources/resource.ts'

// A fourth resource, kept under test/ to prove that a resource is one descriptor and one
// migration (test/resources/tags.test.ts): tags with a unique name (the natural key) and an
// optional colour. Nothing outside this folder and its test knows of it.

export const tagColumns = ['id', 'name', 'color', 'created_at'] as const

const TagRecordSchema = Type.Object(
  {
    id: Type.Optional(Type.String({ format: 'uuid', description: 'The tag’s UUID. Absent: found by name.' })),
    name: Type.String({ minLength: 1, maxLength: 50, description: 'Required, unique, at most 50 characters.' }),
    color: Type.Optional(Type.String({ pattern: '^#[0-9a-f]{6}$', description: '`#rrggbb` in lower case.' })),
    created_at: Type.Optional(Type.String({ format: 'date-time-with-zone' })),
  },
  { $id: 'TagRecord', additionalProperties: true },
)

const TagExportFiltersSchema = Type.Object(
  {
    color: Type.Optional(Type.String({ pattern: '^#[0-9a-f]{6}$', description: 'Only tags of this colour.' })),
    created_after: Type.Optional(Type.String({ format: 'date-time-with-zone' })),
  },
  { $id: 'TagExportFilters', additionalProperties: false },
)

const validator = new RecordValidator(TagRecordSchema, tagColumns, {
  expected: { color: '#rrggbb in lower case' },
})

// The upsert follows db/upsert.ts: records apply as if one at a time, in order; a record whose
// keys (target row, name claimed, name given up) repeat an earlier one's ends the statement.
const upsert = `
with input as materialized (
  select * from unnest($1::int[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[])
    as r(ord, id, name, color, created_at)
  where r.ord >= $6 and r.ord < $7
),
keyed as materialized (
  select r.*, by_id.name is not null as id_exists, by_id.name as old_name, by_name.id as name_owner,
    coalesce(r.id, by_name.id) as target
  from input r
  left join lateral (select t.name from tags t where t.id = r.id limit 1) by_id on true
  left join lateral (select t.id from tags t where t.name = r.name limit 1) by_name on true
),
touched as (
  select ord, 't' || target::text collate "C" as k from keyed where target is not null
  union all
  select ord, 'n' || name collate "C" from keyed
  union all
  select ord, 'n' || old_name collate "C" from keyed where old_name <> name
),
repeated as (select k, min(ord) as first from touched group by k having count(*) > 1),
blocked as (select min(t.ord) as at from touched t join repeated r on r.k = t.k and t.ord > r.first),
decided as materialized (
  select k.*, case
      when k.name_owner is not null and k.name_owner is distinct from k.target then 'unique_violation'
      when k.id_exists or (k.id is null and k.name_owner is not null) then 'update'
      else 'insert'
    end as action
  from keyed k
  where k.ord < coalesce((select at from blocked), 2147483647)
),
updated as (
  update tags t set name = d.name, color = coalesce(d.color, t.color),
    created_at = coalesce(d.created_at, t.created_at)
  from decided d
  where d.action = 'update' and t.id = d.target
  returning 1
),
inserted as (
  insert into tags (id, name, color, created_at)
  select coalesce(d.target, gen_random_uuid()), d.name, d.color, coalesce(d.created_at, now())
  from decided d
  where d.action = 'insert'
  returning 1
)
select (select count(*) from inserted)::int as inserted, (select count(*) from updated)::int as updated,
  coalesce((select json_agg(json_build_object('ord', ord, 'id', id, 'code', action, 'field', 'name', 'value', name,
      'message', 'another tag already has this name') order by ord)
    from decided where action = 'unique_violation'), '[]') as errors,
  (select at from blocked) as next,
  (select string_agg(int8send(hashtextextended(k, 0)), ''::bytea) from touched t
    where t.ord < coalesce((select at from blocked), 2147483647)) as touched`

export default defineResource({
  name: 'tags',
  module: import.meta.url,
  migrations: new URL('./migrations', import.meta.url).pathname,
  record: TagRecordSchema,
  columns: tagColumns,
  validate: (input) =>
    validator.outcome(input, {
      id: uuid(input.id),
      name: shortText(input.name),
      color: shortText(input.color),
      created_at: shortText(input.created_at),
    }),
  naturalKey: { column: 'name', caseInsensitive: false },
  upsert: { text: upsert },
  export: {
    columns: { id: 'uuid', name: 'text', color: 'text', created_at: 'timestamp' },
    filters: TagExportFiltersSchema,
    filterColumns: {
      color: { column: 'color', test: '=' },
      created_after: { column: 'created_at', test: '>=' },
    },
  },
})
