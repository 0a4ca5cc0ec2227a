import t, { type Test } from 'tap'
import { buildTestApp } from '../helper.ts'

// The served OpenAPI document says what the service does (finding 10 of issue 8): what the
// server fills in is optional for a client, files are described as what they hold, and a closed
// form is documented as closed.

type Schema = {
  $ref?: string
  type?: string
  required?: string[]
  properties?: Record<string, Schema>
  items?: Schema
  default?: unknown
  additionalProperties?: boolean | Schema
  oneOf?: Schema[]
  anyOf?: Schema[]
  allOf?: Schema[]
}
interface Parameter {
  in: string
  name: string
  required?: boolean
  schema: Schema
}
interface Operation {
  operationId: string
  parameters?: Parameter[]
  requestBody?: { content: Record<string, { schema: Schema }> }
  responses: Record<string, { content?: Record<string, { schema: Schema }> }>
}
interface Document {
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, Schema> }
}

async function servedDocument(t: Test): Promise<Document> {
  const app = await buildTestApp(t)
  const response = await app.inject({ url: '/docs/json' })
  t.equal(response.statusCode, 200)
  return response.json<Document>()
}

function operations(document: Document): Operation[] {
  return Object.values(document.paths).flatMap((methods) => Object.values(methods))
}

function operation(document: Document, operationId: string): Operation {
  const found = operations(document).find((candidate) => candidate.operationId === operationId)
  if (!found) throw new Error(`no operation ${operationId}`)
  return found
}

/** Every object schema reachable from `schema`, following $refs into components once each. */
function objectSchemas(document: Document, schema: Schema, seen = new Set<Schema>()): Schema[] {
  if (seen.has(schema)) return []
  seen.add(schema)
  const resolved = schema.$ref
    ? (document.components.schemas[schema.$ref.replace('#/components/schemas/', '')] as Schema)
    : schema
  const nested = [
    ...(resolved.oneOf ?? []),
    ...(resolved.anyOf ?? []),
    ...(resolved.allOf ?? []),
    ...Object.values(resolved.properties ?? {}),
    ...(resolved.items ? [resolved.items] : []),
  ]
  return [
    ...(resolved.properties ? [resolved] : []),
    ...nested.flatMap((inner) => objectSchemas(document, inner, seen)),
  ]
}

t.test('a query parameter with a default is documented as optional', async (t) => {
  const document = await servedDocument(t)
  const defaulted = operations(document).flatMap((candidate) =>
    (candidate.parameters ?? [])
      .filter((parameter) => parameter.schema.default !== undefined)
      .map((parameter) => ({ operation: candidate.operationId, name: parameter.name, required: parameter.required })),
  )
  for (const [operationId, name] of [
    ['listImports', 'limit'],
    ['listExports', 'limit'],
    ['getImportErrors', 'format'],
    ['streamUsersExport', 'format'],
    ['streamArticlesExport', 'format'],
    ['streamCommentsExport', 'format'],
  ]) {
    t.ok(
      defaulted.some((parameter) => parameter.operation === operationId && parameter.name === name),
      `${operationId} has ${name} with a default`,
    )
  }
  for (const parameter of defaulted) {
    t.notOk(parameter.required, `${parameter.operation}: ${parameter.name} has a default, so it is not required`)
  }
})

t.test('a request body property with a default is documented as optional, through every $ref', async (t) => {
  const document = await servedDocument(t)
  for (const candidate of operations(document)) {
    for (const [mediaType, { schema }] of Object.entries(candidate.requestBody?.content ?? {})) {
      for (const object of objectSchemas(document, schema)) {
        const defaulted = Object.entries(object.properties ?? {})
          .filter(([, property]) => property.default !== undefined)
          .map(([name]) => name)
        const required = (object.required ?? []).filter((name) => defaulted.includes(name))
        t.same(required, [], `${candidate.operationId} ${mediaType}: no defaulted property is required`)
      }
    }
  }
  for (const name of ['UsersExportRequest', 'ArticlesExportRequest', 'CommentsExportRequest']) {
    t.same(document.components.schemas[name]?.required, ['resource'], `${name} requires only resource`)
  }
})

t.test('what the document now calls optional, the server fills in', async (t) => {
  const app = await buildTestApp(t)
  const exportJob = await app.inject({ method: 'POST', url: '/api/v1/exports', payload: { resource: 'users' } })
  t.equal(exportJob.statusCode, 202, exportJob.body)
  t.match(exportJob.json(), { format: 'ndjson', compression: 'none' })
  const list = await app.inject({ url: '/api/v1/exports' })
  t.equal(list.statusCode, 200)
  t.equal(list.json().items.length, 1)
  const stream = await app.inject({ url: '/api/v1/exports/users/stream' })
  t.equal(stream.statusCode, 200)
  t.match(stream.headers['content-type'], /^application\/x-ndjson/)
})

t.test('response schemas keep their properties required, defaults or not', async (t) => {
  const document = await servedDocument(t)
  // The transform concerns what a client sends; what the service answers always carries them.
  t.ok(document.components.schemas.ImportJob?.required?.includes('dry_run'))
  t.ok(document.components.schemas.ExportJob?.required?.includes('format'))
})

t.test('the JSON export download and the JSON failed records are documented as JSON arrays', async (t) => {
  const document = await servedDocument(t)
  const json = (operationId: string) =>
    operation(document, operationId).responses['200']?.content?.['application/json']?.schema
  t.match(json('downloadExport'), { type: 'array', items: { type: 'object' } }, 'an export is an array of rows')
  // The rejected elements come back as uploaded, and an element that was not an object (`42`)
  // is one of them: the array's items are any JSON value.
  t.match(json('getImportFailedRecords'), { type: 'array', items: {} }, 'failed records are an array')
  t.notOk(json('getImportFailedRecords')?.items?.type, 'of any JSON value')
})

t.test('the multipart upload form is closed, as the service refuses unknown fields', async (t) => {
  const document = await servedDocument(t)
  const form = operation(document, 'createImport').requestBody?.content['multipart/form-data']?.schema
  t.same(form, { $ref: '#/components/schemas/ImportUpload' })
  t.equal(document.components.schemas.ImportUpload?.additionalProperties, false)
})

t.test('the export request says which resource picks which shape (a discriminator mapping)', async (t) => {
  const document = await servedDocument(t)
  const request = document.components.schemas.ExportRequest as Schema & {
    discriminator?: { propertyName: string; mapping?: Record<string, string> }
  }
  t.same(request.discriminator, {
    propertyName: 'resource',
    mapping: {
      users: '#/components/schemas/UsersExportRequest',
      articles: '#/components/schemas/ArticlesExportRequest',
      comments: '#/components/schemas/CommentsExportRequest',
    },
  })
  // And the service still validates with it: a users body with an article filter is refused.
  const app = await buildTestApp(t)
  const response = await app.inject({
    method: 'POST',
    url: '/api/v1/exports',
    payload: { resource: 'users', filters: { tag: 'x' } },
  })
  t.equal(response.statusCode, 400)
})
