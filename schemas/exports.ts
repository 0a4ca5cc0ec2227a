import { type Static, type TObject, Type } from '@sinclair/typebox'
import { pascalName, ref, stringEnum } from './common.ts'
import { jobListSchema, jobStatuses } from './jobs.ts'

// The export API (docs/contract.md §8): streams, and async export jobs whose fixed field names (id, resource,
// format, status, done, created_at, started_at, finished_at, error) are those of import jobs.
// Built from the list of resources (resources/): each one's columns and filters.

export const exportFormats = ['csv', 'ndjson', 'json'] as const
export const exportCompressions = ['none', 'gzip'] as const

/** What the export schemas read of a resource (its descriptor). */
export interface ExportedResource {
  readonly name: string
  /** Columns in export order. */
  readonly columns: readonly string[]
  /** The filters' schema, with an $id. */
  readonly exportFilters: TObject
}

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
export function streamQuerySchema(resource: ExportedResource) {
  return Type.Object(
    {
      format: formatSchema,
      fields: Type.Optional(fieldsSchema(resource.columns)),
      ...(resource.exportFilters.properties as Record<string, TObject>),
    },
    { additionalProperties: false },
  )
}

function exportRequestSchema(resource: ExportedResource) {
  return Type.Object(
    {
      resource: Type.Literal(resource.name),
      format: formatSchema,
      fields: Type.Optional(fieldsSchema(resource.columns)),
      filters: Type.Optional(ref(resource.exportFilters)),
      compression: Type.Optional(
        stringEnum(exportCompressions, { default: 'none', description: 'gzip: the file is written gzip-compressed.' }),
      ),
    },
    {
      $id: `${pascalName(resource.name)}ExportRequest`,
      additionalProperties: false,
      description: `An export of ${resource.name}.`,
    },
  )
}

/** The body of POST /api/v1/exports, as a handler gets it (validated against its resource's shape). */
export type ExportRequest = Omit<Static<ReturnType<typeof exportRequestSchema>>, 'filters'> & {
  filters?: Readonly<Record<string, string | boolean | undefined>>
}

/**
 * The shared schemas of the export API for these resources: each one's filters and request
 * shape, the request (one shape per resource, chosen by `resource`: a discriminator, so a
 * validation error speaks of the chosen resource's fields only), the job and a page of jobs.
 */
export function exportSchemas(resources: readonly ExportedResource[]) {
  const resourceNames = resources.map((resource) => resource.name)
  const requests = resources.map(exportRequestSchema)
  const request = Type.Unsafe<ExportRequest>({
    $id: 'ExportRequest',
    type: 'object',
    // `properties` names the resources once more, so that an unknown one fails with their list.
    properties: { resource: stringEnum(resourceNames) },
    required: ['resource'],
    oneOf: requests.map((schema) => ref(schema)),
    discriminator: { propertyName: 'resource' },
    description: 'What to export: the resource, the format, and optionally fields, filters and compression.',
  })
  const job = exportJobSchema(resourceNames)
  return {
    filters: resources.map((resource) => resource.exportFilters),
    requests,
    request,
    job,
    jobList: jobListSchema(job, 'ExportJobList'),
  }
}

const nullableString = (description: string, format?: string) =>
  Type.Union([Type.String(format ? { format } : {}), Type.Null()], { description })

function exportJobSchema(resourceNames: readonly string[]) {
  return Type.Object(
    {
      id: Type.String({ format: 'uuid' }),
      resource: stringEnum(resourceNames),
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
}

export type ExportJob = Static<ReturnType<typeof exportJobSchema>>
