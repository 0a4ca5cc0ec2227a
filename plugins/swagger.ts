import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import fp from 'fastify-plugin'
import packageJson from '../package.json' with { type: 'json' }

/** The parts of an OpenAPI document that withServerDefaultsOptional reads. */
interface JsonSchema {
  $ref?: string
  required?: string[]
  properties?: Record<string, JsonSchema>
  [keyword: string]: unknown
}
interface OpenApiDocument {
  paths?: Record<string, Record<string, unknown>>
  components?: { schemas?: Record<string, JsonSchema> }
}
interface OpenApiOperation {
  parameters?: { in: string; name: string; required?: boolean; schema?: JsonSchema }[]
  requestBody?: { content?: Record<string, { schema?: JsonSchema }> }
  responses?: Record<string, unknown>
}

const COMPONENT_PREFIX = '#/components/schemas/'

/** Every schema nested in `schema` (not following $refs), itself included. */
function* nestedSchemas(schema: unknown): Generator<JsonSchema> {
  if (typeof schema !== 'object' || schema === null) return
  if (Array.isArray(schema)) {
    for (const item of schema) yield* nestedSchemas(item)
    return
  }
  yield schema as JsonSchema
  for (const [keyword, value] of Object.entries(schema)) {
    // `default`, `enum`, `const` and `examples` hold values, not schemas.
    if (!['default', 'enum', 'const', 'examples', 'example'].includes(keyword)) yield* nestedSchemas(value)
  }
}

/** The names of the components that `roots` reach, directly or through other components. */
function reachableComponents(roots: unknown[], components: Record<string, JsonSchema>): Set<string> {
  const reached = new Set<string>()
  const pending = [...roots]
  while (pending.length > 0) {
    for (const schema of nestedSchemas(pending.pop())) {
      const name = schema.$ref?.startsWith(COMPONENT_PREFIX) ? schema.$ref.slice(COMPONENT_PREFIX.length) : undefined
      if (name && !reached.has(name)) {
        reached.add(name)
        pending.push(components[name])
      }
    }
  }
  return reached
}

/**
 * Each discriminator of the document with its mapping (tag value → schema), which generated
 * clients need to tell the shapes apart. The validating schemas cannot carry it (Ajv refuses a
 * mapping), so it is derived here from the single value each shape allows for the tag.
 */
function withDiscriminatorMappings(document: OpenApiDocument): OpenApiDocument {
  type Shape = { properties?: Record<string, { enum?: unknown[]; const?: unknown }> }
  type Tagged = {
    oneOf?: { $ref?: string }[]
    discriminator?: { propertyName: string; mapping?: Record<string, string> }
  }
  const components = (document.components?.schemas ?? {}) as Record<string, Tagged & Shape>
  for (const schema of Object.values(components)) {
    if (!schema.discriminator || schema.discriminator.mapping || !schema.oneOf) continue
    const mapping: Record<string, string> = {}
    for (const { $ref } of schema.oneOf) {
      const name = $ref?.replace('#/components/schemas/', '')
      const tag: { enum?: unknown[]; const?: unknown } | undefined = name
        ? components[name]?.properties?.[schema.discriminator.propertyName]
        : undefined
      const value = tag?.const ?? (tag?.enum?.length === 1 ? tag.enum[0] : undefined)
      if (typeof value !== 'string' || !$ref) throw new Error(`discriminator: ${$ref} allows no single tag value`)
      mapping[value] = $ref
    }
    schema.discriminator.mapping = mapping
  }
  return document
}

/**
 * The document as a client sees it: a query parameter, header or request-body property with a
 * `default` is optional, since the server fills it in (ajv's useDefaults) before any handler
 * runs. The TypeBox schemas keep such a property required on purpose: `Static<>` then types it
 * as always present, which is what a handler gets; marking it Type.Optional would type it as
 * possibly missing and call for fallbacks that can never run. So the two views part here, in
 * one rule for every route, and only for what a client sends: responses always carry their
 * properties. A component that both requests and responses use cannot say both; it is refused.
 */
function withServerDefaultsOptional(generated: OpenApiDocument): OpenApiDocument {
  // A copy: the generated objects may share arrays with the schemas that validate requests.
  const document = JSON.parse(JSON.stringify(generated)) as OpenApiDocument
  const components = document.components?.schemas ?? {}
  const operations = Object.values(document.paths ?? {}).flatMap(
    (methods) => Object.values(methods) as OpenApiOperation[],
  )
  const requestSchemas: unknown[] = []
  for (const operation of operations) {
    for (const parameter of operation.parameters ?? []) {
      // A path parameter is always required (OpenAPI); none has a default.
      if (parameter.in !== 'path' && parameter.schema?.default !== undefined) delete parameter.required
      requestSchemas.push(parameter.schema)
    }
    for (const media of Object.values(operation.requestBody?.content ?? {})) requestSchemas.push(media.schema)
  }
  const requestComponents = reachableComponents(requestSchemas, components)
  const responseComponents = reachableComponents(
    operations.map((operation) => operation.responses),
    components,
  )
  // Each root of what clients send, named when it is a component that responses use too.
  const roots: { schema: unknown; sharedWithResponses?: string }[] = [
    ...requestSchemas.map((schema) => ({ schema })),
    ...[...requestComponents].map((name) => ({
      schema: components[name],
      sharedWithResponses: responseComponents.has(name) ? name : undefined,
    })),
  ]
  for (const { schema: root, sharedWithResponses } of roots) {
    for (const schema of nestedSchemas(root)) {
      const defaulted = Object.entries(schema.properties ?? {})
        .filter(([, property]) => property.default !== undefined)
        .map(([property]) => property)
      if (!schema.required?.some((property) => defaulted.includes(property))) continue
      if (sharedWithResponses) {
        throw new Error(
          `components.schemas.${sharedWithResponses} has defaults and describes requests and responses too`,
        )
      }
      schema.required = schema.required.filter((property) => !defaulted.includes(property))
      if (schema.required.length === 0) delete schema.required
    }
  }
  return document
}

/**
 * The OpenAPI document, generated from the routes' TypeBox schemas: served at /docs/json and
 * /docs/yaml, browsable at /docs, and committed as openapi.yaml (`make openapi`).
 * It does not depend on configuration, so every deployment serves the same document.
 */
export default fp(
  async (app) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Bulk import/export API',
          version: packageJson.version,
          description:
            'Load and extract users, articles and comments in bulk: async import jobs with per-record errors, streaming and async exports. Errors are RFC 9457 problem details (application/problem+json).',
          license: { name: 'UNLICENSED', identifier: 'UNLICENSED' },
        },
        servers: [{ url: '/', description: 'The service that serves this document' }],
        tags: [
          { name: 'probes', description: 'Health, readiness and liveness for orchestrators.' },
          { name: 'observability', description: 'Prometheus metrics.' },
          { name: 'imports', description: 'Async import jobs: uploads and URLs, per-record errors, failed records.' },
          {
            name: 'uploads',
            description: 'Direct uploads of large files into the object store (STORAGE=s3), for imports.',
          },
          { name: 'exports', description: 'Streaming exports and async export jobs with downloadable files.' },
        ],
        components: {
          securitySchemes: {
            bearerAuth: { type: 'http', scheme: 'bearer', description: 'One of the API_KEYS, as a bearer token.' },
            apiKeyHeader: { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'One of the API_KEYS.' },
          },
        },
      },
      // An upload route streams its multipart body (no validation schema can apply to a stream):
      // its route config names the schema that documents the form, added here for the document.
      transform: ({ schema, url, route }) => {
        const multipartBody = (route.config as { multipartBody?: { $id?: string } } | undefined)?.multipartBody
        if (!multipartBody?.$id || !schema) return { schema, url }
        const body = (schema.body ?? { content: {} }) as { content: Record<string, unknown> }
        const content = { 'multipart/form-data': { schema: { $ref: multipartBody.$id } }, ...body.content }
        return { schema: { ...schema, body: { ...body, content } }, url }
      },
      transformObject: (generated) =>
        withDiscriminatorMappings(
          withServerDefaultsOptional((generated as { openapiObject: OpenApiDocument }).openapiObject),
        ) as never,
      // Shared schemas keep their $id as their name under components.schemas.
      refResolver: {
        buildLocalReference: (json, _baseUri, _fragment, index) => (json.$id as string | undefined) ?? `def-${index}`,
      },
    })
    await app.register(swaggerUi, { routePrefix: '/docs' })
  },
  { name: 'swagger', dependencies: ['problem-details'] },
)
