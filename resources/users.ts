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
          'ISO-8601 date and time with a zone (`Z`, `±HH:MM`, `±HHMM` or `±HH`; a space may replace the `T`), at most 6 fractional digits. Absent: now() for a new user, unchanged on update.',
      }),
    ),
    updated_at: Type.Optional(
      Type.String({
        format: 'date-time-with-zone',
        description:
          'ISO-8601 date and time with a zone (`Z`, `±HH:MM`, `±HHMM` or `±HH`; a space may replace the `T`), at most 6 fractional digits. Absent: now(), on insert and on update.',
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

/** A user of the upsert's input: the batch's arrays, one row per record. */
interface UserInput {
  ord: number
  id: string | null
  email: string
  name: string
  role: UsersTable['role']
  active: boolean | null
  created_at: string | null
  updated_at: string | null
}

/** The SQL type of each of the batch's arrays (UpsertStatement.input). */
const input = {
  ord: 'int',
  id: 'uuid',
  email: 'text',
  name: 'text',
  role: 'text',
  active: 'boolean',
  created_at: 'timestamptz',
  updated_at: 'timestamptz',
} satisfies Record<keyof UserInput, string>

/**
 * A new user's values, from a record of the batch: `d` in the upsert (a record decided as an
 * insert targets its own id), `r` in the insert-first statement; in the order of userColumns. The
 * defaults live here only.
 */
function newUser(from: 'd' | 'r') {
  const value = (column: keyof UserInput) => sql.ref(`${from}.${column}`)
  return [
    sql<string>`coalesce(${value('id')}, gen_random_uuid())`.as('id'),
    sql<string>`${value('email')}`.as('email'),
    sql<string>`${value('name')}`.as('name'),
    sql<UsersTable['role']>`${value('role')}`.as('role'),
    sql<boolean>`coalesce(${value('active')}, true)`.as('active'),
    sql<string>`coalesce(${value('created_at')}, now())`.as('created_at'),
    sql<string>`coalesce(${value('updated_at')}, now())`.as('updated_at'),
  ]
}

/**
 * The users upsert (see db/upsert.ts). A record with an id targets that row; one without targets
 * the row with its email (case-insensitive). An email that belongs to another row is a
 * unique_violation. Updates keep absent fields, except updated_at: now().
 */
export const usersUpsert: UpsertStatement = {
  input,
  insertNew: (batch) =>
    query
      .insertInto('users')
      .columns(userColumns)
      .expression(query.selectFrom(batchRecords<UserInput>(batch, input)).select(newUser('r')).where(inRange(batch))),
  build: (batch) =>
    withKeyBlocking(
      query
        .with(
          (cte) => cte('keyed').materialized(),
          (db) =>
            db
              .selectFrom(batchRecords<UserInput>(batch, input))
              .leftJoinLateral(
                (eb) => eb.selectFrom('users as u').select('u.email').whereRef('u.id', '=', 'r.id').limit(literal(1)).as('by_id'),
                (join) => join.onTrue(),
              )
              // The row owning the email: no second look-up when the id's row already has this email.
              .leftJoinLateral(
                (eb) =>
                  eb
                    .selectFrom('users as u')
                    .select('u.id')
                    .where(sql<boolean>`lower(u.email) = lower(r.email)`)
                    .where(sql<boolean>`(by_id.email is null or lower(by_id.email) <> lower(r.email))`)
                    .limit(literal(1))
                    .as('by_email'),
                (join) => join.onTrue(),
              )
              .selectAll('r')
              .select((eb) => [
                sql<string>`lower(r.email)`.as('email_key'),
                eb('by_id.email', 'is not', null).as('id_exists'),
                sql<string | null>`case when lower(by_id.email) = lower(r.email) then r.id else by_email.id end`.as(
                  'email_owner',
                ),
                eb.fn.coalesce('r.id', 'by_email.id').as('target'),
                sql<string | null>`lower(by_id.email)`.as('old_email'),
              ])
              .where(inRange(batch)),
        )
        // Keys no two records of one statement may share: the row they target, the email they
        // claim, the email their target gives up.
        .with('touched', (db) =>
          db
            .selectFrom('keyed')
            .select(['ord', touchedKey('t', 'target')])
            .where('target', 'is not', null)
            .unionAll(db.selectFrom('keyed').select(['ord', touchedKey('e', 'email_key')]))
            .unionAll(
              db
                .selectFrom('keyed')
                .select(['ord', touchedKey('e', 'old_email')])
                .whereRef('old_email', '<>', 'email_key'),
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
              sql<'unique_violation' | 'update' | 'insert'>`case
                when k.email_owner is not null and k.email_owner is distinct from k.target then 'unique_violation'
                when k.id_exists or (k.id is null and k.email_owner is not null) then 'update'
                else 'insert'
              end`.as('action'),
            )
            .where(notBlocked('k.ord')),
      )
      .with('updated', (db) =>
        db
          .updateTable('users as u')
          .from('decided as d')
          .set((eb) => ({
            email: eb.ref('d.email'),
            name: eb.ref('d.name'),
            role: eb.ref('d.role'),
            active: eb.fn.coalesce('d.active', 'u.active'),
            created_at: sql`coalesce(d.created_at, u.created_at)`,
            updated_at: sql`coalesce(d.updated_at, now())`,
          }))
          .where('d.action', '=', literal('update'))
          .whereRef('u.id', '=', 'd.target')
          .returning(sql`1`.as('one')),
      )
      .with('inserted', (db) =>
        db
          .insertInto('users')
          .columns(userColumns)
          .expression(db.selectFrom('decided as d').select(newUser('d')).where('d.action', '=', literal('insert')))
          .returning(sql`1`.as('one')),
      )
      .selectNoFrom((eb) =>
        outcomeColumns(
          eb
            .selectFrom('decided')
            .select(
              sql`json_agg(json_build_object('ord', ord, 'id', id, 'code', action, 'field', 'email', 'value', email,
                'message', 'another user already has this email') order by ord)`.as('errors'),
            )
            .where('action', '=', literal('unique_violation')),
        ),
      ),
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
  examples: [
    {
      id: '1f0b6c1e-3a5d-4e8f-9b2c-7d4e5f6a7b8c',
      email: 'ada@example.com',
      name: 'Ada Lovelace',
      role: 'admin',
      active: true,
      created_at: '2024-01-15T09:30:00Z',
    },
    // No id: the user with this email is updated, or a new one is inserted.
    { email: 'grace@example.com', name: 'Grace Hopper', role: 'author' },
  ],
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
