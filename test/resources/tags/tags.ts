import { Type } from '@sinclair/typebox'
import { type ColumnType, type Generated, sql } from 'kysely'
import { RecordValidator, shortText, uuid } from '../../../app/workers/fields.ts'
import { query } from '../../../db/query.ts'
import {
  batchRecords,
  inRange,
  literal,
  notBlocked,
  outcomeColumns,
  touchedKey,
  type UpsertStatement,
  withKeyBlocking,
} from '../../../db/upsert.ts'
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

/** The `tags` table, for the upsert's typed statement (the service's Database does not know it). */
interface TagsTable {
  id: Generated<string>
  name: string
  color: string | null
  created_at: ColumnType<Date, string | undefined, string>
}

interface TagInput {
  ord: number
  id: string | null
  name: string
  color: string | null
  created_at: string | null
}

const input = { ord: 'int', id: 'uuid', name: 'text', color: 'text', created_at: 'timestamptz' } satisfies Record<
  keyof TagInput,
  string
>

/** A new tag's values (in the order of tagColumns), from a record: `d` in the upsert, `r` in the insert-first one. */
function newTag(from: 'd' | 'r') {
  const value = (column: keyof TagInput) => sql.ref(`${from}.${column}`)
  return [
    sql<string>`coalesce(${value('id')}, gen_random_uuid())`.as('id'),
    sql<string>`${value('name')}`.as('name'),
    sql<string | null>`${value('color')}`.as('color'),
    sql<string>`coalesce(${value('created_at')}, now())`.as('created_at'),
  ]
}

// The upsert follows db/upsert.ts: records apply as if one at a time, in order; a record whose
// keys (target row, name claimed, name given up) repeat an earlier one's ends the statement.
const upsert: UpsertStatement = {
  input,
  insertNew: (batch) =>
    query
      .withTables<{ tags: TagsTable }>()
      .insertInto('tags')
      .columns(tagColumns)
      .expression(query.selectFrom(batchRecords<TagInput>(batch, input)).select(newTag('r')).where(inRange(batch))),
  build: (batch) =>
    withKeyBlocking(
      query
        .withTables<{ tags: TagsTable }>()
        .with(
          (cte) => cte('input').materialized(),
          (db) => db.selectFrom(batchRecords<TagInput>(batch, input)).selectAll('r').where(inRange(batch)),
        )
        .with(
          (cte) => cte('keyed').materialized(),
          (db) =>
            db
              .selectFrom('input as r')
              .leftJoinLateral(
                (eb) =>
                  eb
                    .selectFrom('tags as t')
                    .select('t.name')
                    .whereRef('t.id', '=', 'r.id')
                    .limit(literal(1))
                    .as('by_id'),
                (join) => join.onTrue(),
              )
              .leftJoinLateral(
                (eb) =>
                  eb
                    .selectFrom('tags as t')
                    .select('t.id')
                    .whereRef('t.name', '=', 'r.name')
                    .limit(literal(1))
                    .as('by_name'),
                (join) => join.onTrue(),
              )
              .selectAll('r')
              .select((eb) => [
                eb('by_id.name', 'is not', null).as('id_exists'),
                'by_id.name as old_name',
                'by_name.id as name_owner',
                eb.fn.coalesce('r.id', 'by_name.id').as('target'),
              ]),
        )
        .with('touched', (db) =>
          db
            .selectFrom('keyed')
            .select(['ord', touchedKey('t', 'target')])
            .where('target', 'is not', null)
            .unionAll(db.selectFrom('keyed').select(['ord', touchedKey('n', 'name')]))
            .unionAll(
              db
                .selectFrom('keyed')
                .select(['ord', touchedKey('n', 'old_name')])
                .whereRef('old_name', '<>', 'name'),
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
                when k.name_owner is not null and k.name_owner is distinct from k.target then 'unique_violation'
                when k.id_exists or (k.id is null and k.name_owner is not null) then 'update'
                else 'insert'
              end`.as('action'),
            )
            .where(notBlocked('k.ord')),
      )
      .with('updated', (db) =>
        db
          .updateTable('tags as t')
          .from('decided as d')
          .set({
            name: sql.ref('d.name'),
            color: sql`coalesce(d.color, t.color)`,
            created_at: sql`coalesce(d.created_at, t.created_at)`,
          })
          .where('d.action', '=', literal('update'))
          .whereRef('t.id', '=', 'd.target')
          .returning(literal(1).as('one')),
      )
      .with('inserted', (db) =>
        db
          .insertInto('tags')
          .columns(tagColumns)
          .expression(db.selectFrom('decided as d').select(newTag('d')).where('d.action', '=', literal('insert')))
          .returning(literal(1).as('one')),
      )
      .selectNoFrom((eb) =>
        outcomeColumns(
          eb
            .selectFrom('decided')
            .select(
              sql`json_agg(json_build_object('ord', ord, 'id', id, 'code', action, 'field', 'name', 'value', name,
                'message', 'another tag already has this name') order by ord)`.as('errors'),
            )
            .where('action', '=', literal('unique_violation')),
        ),
      ),
}

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
  upsert,
  examples: [{ name: 'urgent', color: '#ff0000' }],
  export: {
    columns: { id: 'uuid', name: 'text', color: 'text', created_at: 'timestamp' },
    filters: TagExportFiltersSchema,
    filterColumns: {
      color: { column: 'color', test: '=' },
      created_after: { column: 'created_at', test: '>=' },
    },
  },
})
