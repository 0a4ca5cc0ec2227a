import type { Static, TObject } from '@sinclair/typebox'
import type { RecordOutcome, Source } from '../app/workers/fields.ts'
import type { ExportColumnKind, ExportFilterTest, ExportTable } from '../db/exports.ts'
import type { UpsertStatement } from '../db/upsert.ts'

// A resource (users, articles, comments, …) is one descriptor: one module of this folder that
// holds everything that differs between resources. Everything else is derived from the list of
// descriptors the app is built with (resources/index.ts): the import and export routes and their
// OpenAPI schemas, the validator the worker threads run, the export SQL, the metrics' labels.
// Adding a resource is one module here and one migration in db/migrations/ (docs/api.md,
// "Adding a resource").

/** The names of a record schema's fields. */
type FieldOf<Record extends TObject> = keyof Static<Record> & string

/** What a resource's module writes; `defineResource` derives the rest. */
export interface ResourceSpec<
  Name extends string,
  Record extends TObject,
  Columns extends readonly FieldOf<Record>[],
  Filters extends TObject,
> {
  /** Plural and lower case: the table, the `resource` of a job, the URL segment of its stream. */
  name: Name
  /**
   * `import.meta.url` of the module whose default export is this descriptor: the job thread and
   * the validation threads load the descriptor by it (functions cannot cross threads).
   */
  module: string
  /**
   * A folder of migrations of its own, for a resource defined outside this repository (a test's):
   * the service applies them after db/migrations/ (name them to sort after those). The
   * resources of this repository have their tables' migrations in db/migrations/.
   */
  migrations?: string
  /** One record of an import (TypeBox, with an `$id`): types, formats and lengths. */
  record: Record
  /** The columns in CSV and export order; also the order of the upsert's array parameters. */
  columns: Columns
  /**
   * Validates one record (a CSV row keyed by header, or a parsed JSON object) and normalizes it
   * into the values to store. Runs in the validation threads, a million times per import: build
   * the checks once, at module load (see app/workers/fields.ts, RecordValidator).
   */
  validate(input: globalThis.Record<string, unknown>, source: Source): RecordOutcome
  /** Columns where an explicit null differs from absent (the upsert gets a presence array). */
  nullableColumns?: readonly Columns[number][]
  /** The natural key: a record without an id targets the row that has this key. */
  naturalKey?: { column: Columns[number]; caseInsensitive: boolean }
  /** The bulk upsert of a batch (db/upsert.ts says what it must do). */
  upsert: UpsertStatement
  /**
   * Records for the docs: docs/api.md shows them as CSV and NDJSON (`make generate`), and a test
   * imports them (the default resources' in the order users, articles, comments) without error.
   */
  examples: readonly [Static<Record>, ...Static<Record>[]]
  export: {
    /** How each column is written (one rendering per kind that the import reads back exactly). */
    columns: { readonly [Column in Columns[number]]: ExportColumnKind }
    /** The filters of an export (TypeBox, with an `$id`): querystring of a stream, `filters` of a job. */
    filters: Filters
    /** Each filter's column and test. */
    filterColumns: { readonly [Filter in FieldOf<Filters>]-?: { column: Columns[number]; test: ExportFilterTest } }
  }
}

/** A resource as the rest of the service sees it. */
export interface ResourceDescriptor {
  readonly name: string
  readonly module: string
  readonly migrations?: string
  readonly record: TObject
  readonly columns: readonly string[]
  /** Fields every record must carry: a CSV header without one of them is refused. */
  readonly required: readonly string[]
  readonly validate: (input: Record<string, unknown>, source: Source) => RecordOutcome
  readonly nullableColumns: readonly string[]
  readonly naturalKey?: { readonly column: string; readonly caseInsensitive: boolean }
  readonly upsert: UpsertStatement
  /** Records for the docs, valid and importable. */
  readonly examples: readonly globalThis.Record<string, unknown>[]
  /** What an export reads: the table, its columns' kinds, the filters' tests. */
  readonly exportTable: ExportTable
  /** The export filters' schema. */
  readonly exportFilters: TObject
}

/**
 * A resource from its spec. Typed so that a missing piece does not compile: every column needs an
 * export kind, every filter a column and test, and columns and keys must be fields of the record.
 */
export function defineResource<
  const Name extends string,
  Record extends TObject,
  const Columns extends readonly FieldOf<Record>[],
  Filters extends TObject,
>(spec: ResourceSpec<Name, Record, Columns, Filters>): ResourceDescriptor & { readonly name: Name } {
  if (!/^[a-z][a-z_]*$/.test(spec.name)) throw new Error(`resource name ${spec.name}: lower case letters and _ only`)
  for (const schema of [spec.record, spec.export.filters]) {
    if (!schema.$id) throw new Error(`resource ${spec.name}: its record and filter schemas need an $id`)
  }
  const input = ['ord', ...spec.columns, ...(spec.nullableColumns ?? []).map((column) => `has_${column}`)]
  if (Object.keys(spec.upsert.input).join() !== input.join()) {
    throw new Error(
      `resource ${spec.name}: the upsert's input must be, in this order: ${input.join(', ')} (the batch's arrays)`,
    )
  }
  return {
    name: spec.name,
    module: spec.module,
    migrations: spec.migrations,
    record: spec.record,
    columns: spec.columns,
    required: spec.record.required ?? [],
    validate: spec.validate,
    nullableColumns: spec.nullableColumns ?? [],
    naturalKey: spec.naturalKey,
    upsert: spec.upsert,
    examples: spec.examples,
    exportTable: { table: spec.name, columns: spec.export.columns, filters: spec.export.filterColumns },
    exportFilters: spec.export.filters,
  }
}
