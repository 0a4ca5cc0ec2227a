import { Type } from '@sinclair/typebox'
import { sql } from 'kysely'
import t from 'tap'
import { RecordValidator, shortText } from '../../app/workers/fields.ts'
import { query } from '../../db/query.ts'
import { checkResources, defaultResources } from '../../resources/index.ts'
import { defineResource } from '../../resources/resource.ts'

// defineResource: what a descriptor must hold, checked by the compiler where it can be and at
// start-up where it cannot.

const Record = Type.Object({ id: Type.String(), name: Type.String() }, { $id: 'NoteRecord' })
const Filters = Type.Object({ name: Type.Optional(Type.String()) }, { $id: 'NoteExportFilters' })
const columns = ['id', 'name'] as const
const validator = new RecordValidator(Record, columns)

const spec = {
  name: 'notes',
  module: import.meta.url,
  record: Record,
  columns,
  validate: (input: globalThis.Record<string, unknown>) =>
    validator.outcome(input, { id: shortText(input.id), name: shortText(input.name) }),
  upsert: {
    input: { ord: 'int', id: 'uuid', name: 'text' },
    build: () => query.selectNoFrom(sql`1`.as('unused')) as never,
    insertNew: () => query.selectNoFrom(sql`1`.as('unused')),
  },
  examples: [{ id: 'n-1', name: 'A note' }],
  export: {
    columns: { id: 'uuid', name: 'text' },
    filters: Filters,
    filterColumns: { name: { column: 'name', test: '=' } },
  },
} as const

t.test('a descriptor derives what the rest of the service reads', async (t) => {
  const notes = defineResource(spec)
  t.equal(notes.name, 'notes')
  t.same(notes.required, ['id', 'name'], 'required fields come from the record schema')
  t.same(notes.nullableColumns, [])
  t.same(notes.exportTable, { table: 'notes', columns: spec.export.columns, filters: spec.export.filterColumns })
  t.equal(notes.exportFilters, Filters)
})

t.test('what the compiler cannot check, defineResource and checkResources refuse', async (t) => {
  t.throws(() => defineResource({ ...spec, name: 'Notes' }), /lower case/)
  t.throws(() => defineResource({ ...spec, record: Type.Object({ id: Type.String(), name: Type.String() }) }), /\$id/)
  t.throws(() => checkResources([...defaultResources, defineResource({ ...spec, name: 'users' })]), /two resources/)
  const swapped = { ...spec.upsert, input: { ord: 'int', name: 'text', id: 'uuid' } }
  t.throws(() => defineResource({ ...spec, upsert: swapped }), /upsert's input must be, in this order: ord, id, name/)
  t.equal(checkResources(defaultResources), defaultResources)
})

// Typed so that a missing piece does not compile (`make check` runs tsc over this file): each
// `@ts-expect-error` fails the build if the line it marks ever compiles.
export function missingPiecesDoNotCompile(): void {
  // @ts-expect-error: a column without its export kind
  defineResource({ ...spec, export: { ...spec.export, columns: { id: 'uuid' } } })
  // @ts-expect-error: a filter without its column and test
  defineResource({ ...spec, export: { ...spec.export, filterColumns: {} } })
  // @ts-expect-error: a filter that tests no column of the resource
  defineResource({ ...spec, export: { ...spec.export, filterColumns: { name: { column: 'title', test: '=' } } } })
  // @ts-expect-error: a natural key that is not a column
  defineResource({ ...spec, naturalKey: { column: 'title', caseInsensitive: false } })
  // @ts-expect-error: a column the record does not have
  defineResource({ ...spec, columns: ['id', 'name', 'title'] as const })
  // @ts-expect-error: an example that is not a record
  defineResource({ ...spec, examples: [{ id: 'n-1' }] })
  // @ts-expect-error: no example
  defineResource({ ...spec, examples: [] })
  // @ts-expect-error: no upsert
  defineResource({ ...spec, upsert: undefined })
}
