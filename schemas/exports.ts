import { type Static, type TObject, type TSchema, Type } from '@sinclair/typebox'
import { ArticleExportFiltersSchema, articleColumns } from './articles.ts'
import { CommentExportFiltersSchema, commentColumns } from './comments.ts'
import { ref, stringEnum } from './common.ts'
import { jobListSchema, jobStatuses } from './jobs.ts'
import { UserExportFiltersSchema, userColumns } from './users.ts'

// The export API (docs/contract.md §8): streams, and async export jobs whose fixed field names (id, resource,
// format, status, done, created_at, started_at, finished_at, error) are those of import jobs.

export const exportFormats = ['csv', 'ndjson', 'json'] as const
export const exportCompressions = ['none', 'gzip'] as const

/** Each resource's columns (in export order) and filters: the one table both export modes read. */
export const exportResourceSchemas = {
  users: { columns: userColumns, filters: UserExportFiltersSchema },
  articles: { columns: articleColumns, filters: ArticleExportFiltersSchema },
  comments: { columns: commentColumns, filters: CommentExportFiltersSchema },
} as const satisfies Record<string, { columns: readonly string[]; filters: TObject }>

export type ExportResourceName = keyof typeof exportResourceSchemas
export const exportResourceNames = Object.keys(exportResourceSchemas) as ExportResourceName[]

function fieldsSchema(columns: readonly string[]) {
  return Type.Array(stringEnum(columns), {
    minItems: 1,
    uniqueItems: true,
    description: `Columns to export, in this order (default: all, in the order ${columns.join(', ')}). In a query string: comma-separated or repeated.`,
  })
}

const formatSchema = stringEnum(exportFormats, {
  default: 'ndjson',
  description: 'ndjson (one JSON object per line), csv (RFC 4180 with a header row) or json (one array).',
})

/** The querystring of GET /api/v1/exports/<resource>/stream: format, fields and the resource's filters. */
export function streamQuerySchema(resource: ExportResourceName) {
  const { columns, filters } = exportResourceSchemas[resource]
  return Type.Object(
    { format: formatSchema, fields: Type.Optional(fieldsSchema(columns)), ...filters.properties },
    { additionalProperties: false },
  )
}

function exportRequestSchema<Filters extends TSchema>(resource: ExportResourceName, filters: Filters, $id: string) {
  const { columns } = exportResourceSchemas[resource]
  return Type.Object(
    {
      resource: Type.Literal(resource),
      format: formatSchema,
      fields: Type.Optional(fieldsSchema(columns)),
      filters: Type.Optional(ref(filters as Filters & { $id: string })),
      compression: Type.Optional(
        stringEnum(exportCompressions, { default: 'none', description: 'gzip: the file is written gzip-compressed.' }),
      ),
    },
    { $id, additionalProperties: false, description: `An export of ${resource}.` },
  )
}

export const exportRequests = [
  exportRequestSchema('users', UserExportFiltersSchema, 'UsersExportRequest'),
  exportRequestSchema('articles', ArticleExportFiltersSchema, 'ArticlesExportRequest'),
  exportRequestSchema('comments', CommentExportFiltersSchema, 'CommentsExportRequest'),
]

/**
 * The body of POST /api/v1/exports: one shape per resource, chosen by `resource` (a
 * discriminator, so a validation error speaks of the chosen resource's fields only).
 */
export const ExportRequestSchema = Type.Unsafe<Static<(typeof exportRequests)[number]>>({
  $id: 'ExportRequest',
  type: 'object',
  // `properties` names the resources once more, so that an unknown one fails with their list.
  properties: { resource: stringEnum(exportResourceNames) },
  required: ['resource'],
  oneOf: exportRequests.map((schema) => ref(schema)),
  discriminator: { propertyName: 'resource' },
  description: 'What to export: the resource, the format, and optionally fields, filters and compression.',
})

export type ExportRequest = Static<typeof ExportRequestSchema>

const nullableString = (description: string, format?: string) =>
  Type.Union([Type.String(format ? { format } : {}), Type.Null()], { description })

export const ExportJobSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    resource: stringEnum(exportResourceNames),
    format: stringEnum(exportFormats),
    status: stringEnum(jobStatuses),
    done: Type.Boolean({ description: 'True once the status is completed, failed or cancelled.' }),
    created_at: Type.String({ format: 'date-time' }),
    started_at: nullableString('When the job first started running.'),
    finished_at: nullableString('When the job finished.'),
    counters: Type.Object(
      {
        rows: Type.Integer({ description: 'Rows written (so far, while running).' }),
        bytes: Type.Integer({ description: 'Bytes of the file (compressed, with compression gzip).' }),
      },
      { additionalProperties: false },
    ),
    fields: Type.Array(Type.String(), { description: 'The exported columns, in file order.' }),
    filters: Type.Object({}, { additionalProperties: true, description: 'The filters the export applied.' }),
    compression: stringEnum(exportCompressions),
    download_url: nullableString('The finished file; null until completed, and after it expired.'),
    sha256: nullableString('SHA-256 of the file (also its ETag); null until completed.'),
    expires_at: nullableString('When the file is deleted (EXPORT_TTL_SECONDS after completion).'),
    expired: Type.Boolean({ description: 'True once the file has expired: download_url is then null.' }),
    error: Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()], {
      description: 'Why a failed job failed: a problem details object (RFC 9457).',
    }),
  },
  { $id: 'ExportJob', additionalProperties: false },
)

export type ExportJob = Static<typeof ExportJobSchema>

export const ExportJobListSchema = jobListSchema(ExportJobSchema, 'ExportJobList')
