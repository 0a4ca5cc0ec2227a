import { Type } from '@sinclair/typebox'
import type { ColumnType, Generated } from 'kysely'
import { csvBoolean, jsonBoolean, RecordValidator, shortText, uuid } from '../app/workers/fields.ts'
import { stringEnum } from '../schemas/common.ts'
import '../schemas/record-formats.ts'
import { defineResource } from './resource.ts'

// Users: everything that is theirs (docs/contract.md §1–§3). The rest of the service derives
// its routes, schemas and SQL from this descriptor (resources/resource.ts).

/** The columns of a user, in the order of an export. On import they may come in any order. */
export const userColumns = ['id', 'email', 'name', 'role', 'active', 'created_at', 'updated_at'] as const

export const userRoles = ['admin', 'editor', 'author', 'reader'] as const

/**
 * One user of an import, as a JSON object (NDJSON line or element of a JSON array); a CSV row is
 * read as this object after its cells are converted. Values are trimmed first; an empty string
 * or null of an optional field means absent.
 */
export const UserRecordSchema = Type.Object(
  {
    id: Type.Optional(
      Type.String({
        format: 'uuid',
        description:
          'The user’s UUID, any case (stored in lower case). Absent: the user with the same email is updated, or a new user is inserted with a new id.',
      }),
    ),
    email: Type.String({
      format: 'email',
      maxLength: 254,
      description:
        'Required. A `local@domain.tld` address of at most 254 characters, unique case-insensitively; stored trimmed, case preserved.',
    }),
    name: Type.String({ minLength: 1, description: 'Required, non-blank. Stored trimmed.' }),
    // A union of literals (not stringEnum): the compiled TypeBox check only knows its own kinds.
    role: Type.Union(
      userRoles.map((role) => Type.Literal(role)),
      { description: 'Required. One of `admin`, `editor`, `author`, `reader` (exactly, after trimming).' },
    ),
    active: Type.Optional(
      Type.Boolean({
        description:
          'A JSON boolean; in CSV `true` or `false` in any case. Absent: true for a new user, unchanged on update.',
      }),
    ),
    created_at: Type.Optional(
      Type.String({
        format: 'date-time-with-zone',
        description:
          'ISO-8601 date and time with a zone (`Z`, `±HH:MM` or `±HHMM`), at most 6 fractional digits. Absent: now() for a new user, unchanged on update.',
      }),
    ),
    updated_at: Type.Optional(
      Type.String({
        format: 'date-time-with-zone',
        description:
          'ISO-8601 date and time with a zone (`Z`, `±HH:MM` or `±HHMM`), at most 6 fractional digits. Absent: now(), on insert and on update.',
      }),
    ),
  },
  {
    $id: 'UserRecord',
    description: 'One user record of an import. Unknown keys (CSV columns) are ignored.',
    additionalProperties: true,
  },
)

/** Filters of a users export (querystring of its stream, `filters` of an async export). */
export const UserExportFiltersSchema = Type.Object(
  {
    role: Type.Optional(stringEnum(userRoles, { description: 'Only users with this role.' })),
    active: Type.Optional(Type.Boolean({ description: 'Only active (true) or inactive (false) users.' })),
    created_after: Type.Optional(
      Type.String({ format: 'date-time-with-zone', description: 'created_at at or after this.' }),
    ),
    created_before: Type.Optional(
      Type.String({ format: 'date-time-with-zone', description: 'created_at before this.' }),
    ),
    updated_after: Type.Optional(
      Type.String({ format: 'date-time-with-zone', description: 'updated_at at or after this.' }),
    ),
    updated_before: Type.Optional(
      Type.String({ format: 'date-time-with-zone', description: 'updated_at before this.' }),
    ),
  },
  { $id: 'UserExportFilters', additionalProperties: false },
)

/** Row of the `users` table (docs/contract.md §1). Timestamps are read as Date and written as ISO strings. */
export interface UsersTable {
  id: Generated<string>
  email: string
  name: string
  role: 'admin' | 'editor' | 'author' | 'reader'
  active: Generated<boolean>
  created_at: ColumnType<Date, string | undefined, string>
  updated_at: ColumnType<Date, string | undefined, string>
}


const validator = new RecordValidator(UserRecordSchema, userColumns)

/**
 * The users upsert (see db/upsert.ts). Parameters: ord, id, email, name, role, active,
 * created_at, updated_at (arrays), then the ordinal range. A record with an id targets that row;
 * one without targets the row with its email (case-insensitive). An email that belongs to
 * another row is a unique_violation. Updates keep absent fields, except updated_at: now().
 */
export const usersUpsert = {
  text: `
with keyed as materialized (
  select r.*, lower(r.email) as email_key, by_id.email is not null as id_exists,
    case when lower(by_id.email) = lower(r.email) then r.id else by_email.id end as email_owner,
    coalesce(r.id, by_email.id) as target, lower(by_id.email) as old_email
  from unnest($1::int[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::boolean[], $7::timestamptz[], $8::timestamptz[])
    as r(ord, id, email, name, role, active, created_at, updated_at)
  left join lateral (select u.email from users u where u.id = r.id limit 1) by_id on true
  -- The row owning the email: no second look-up when the id's row already has this email.
  left join lateral (
    select u.id from users u
    where lower(u.email) = lower(r.email) and (by_id.email is null or lower(by_id.email) <> lower(r.email))
    limit 1
  ) by_email on true
  where r.ord >= $9 and r.ord < $10
),
-- Keys no two records of one statement may share: the row they target, the email they claim,
-- the email their target gives up. The first record that repeats a key (the second occurrence
-- with the smallest ordinal) ends the statement's range. Hash aggregates, no sorts; "C"
-- collation because only equality matters.
touched as (
  select ord, 't' || target::text collate "C" as k from keyed where target is not null
  union all
  select ord, 'e' || email_key collate "C" from keyed
  union all
  select ord, 'e' || old_email collate "C" from keyed where old_email <> email_key
),
repeated as (select k, min(ord) as first from touched group by k having count(*) > 1),
blocked as (select min(t.ord) as at from touched t join repeated r on r.k = t.k and t.ord > r.first),
decided as materialized (
  select k.*, case
      when k.email_owner is not null and k.email_owner is distinct from k.target then 'unique_violation'
      when k.id_exists or (k.id is null and k.email_owner is not null) then 'update'
      else 'insert'
    end as action
  from keyed k
  where k.ord < coalesce((select at from blocked), 2147483647)
),
updated as (
  update users u set email = d.email, name = d.name, role = d.role,
    active = coalesce(d.active, u.active),
    created_at = coalesce(d.created_at, u.created_at),
    updated_at = coalesce(d.updated_at, now())
  from decided d
  where d.action = 'update' and u.id = d.target
  returning 1
),
inserted as (
  insert into users (id, email, name, role, active, created_at, updated_at)
  select coalesce(d.target, gen_random_uuid()), d.email, d.name, d.role, coalesce(d.active, true),
    coalesce(d.created_at, now()), coalesce(d.updated_at, now())
  from decided d
  where d.action = 'insert'
  returning 1
)
select (select count(*) from inserted)::int as inserted, (select count(*) from updated)::int as updated,
  coalesce((select json_agg(json_build_object('ord', ord, 'id', id, 'code', action, 'field', 'email', 'value', email,
      'message', 'another user already has this email') order by ord)
    from decided where action = 'unique_violation'), '[]') as errors,
  (select at from blocked) as next,
  -- The keys this statement read or wrote, as 64-bit hashes: a concurrent batch that shares
  -- none could not see it (a hash collision only costs a needless rerun).
  (select string_agg(int8send(hashtextextended(k, 0)), ''::bytea) from touched t
    where t.ord < coalesce((select at from blocked), 2147483647)) as touched`,
}

/**
 * The descriptor. Its `validate` checks one user record (docs/contract.md §2): a CSV row (text cells keyed by header) or a parsed JSON
 * object; unknown keys are ignored. The row holds the values to store: trimmed, the id in lower
 * case, `active` a boolean; absent fields are left undefined (the upsert gives them their defaults).
 */
export default defineResource({
  name: 'users',
  module: import.meta.url,
  record: UserRecordSchema,
  columns: userColumns,
  validate: (input, source) =>
    validator.outcome(input, {
      id: uuid(input.id),
      email: shortText(input.email),
      name: shortText(input.name),
      role: shortText(input.role),
      active: source === 'csv' ? csvBoolean(input.active) : jsonBoolean(input.active),
      created_at: shortText(input.created_at),
      updated_at: shortText(input.updated_at),
    }),
  naturalKey: { column: 'email', caseInsensitive: true },
  upsert: usersUpsert,
  export: {
    columns: {
      id: 'uuid',
      email: 'text',
      name: 'text',
      role: 'text',
      active: 'boolean',
      created_at: 'timestamp',
      updated_at: 'timestamp',
    },
    filters: UserExportFiltersSchema,
    // Ranges: `_after` inclusive, `_before` exclusive.
    filterColumns: {
      role: { column: 'role', test: '=' },
      active: { column: 'active', test: '=' },
      created_after: { column: 'created_at', test: '>=' },
      created_before: { column: 'created_at', test: '<' },
      updated_after: { column: 'updated_at', test: '>=' },
      updated_before: { column: 'updated_at', test: '<' },
    },
  },
})
