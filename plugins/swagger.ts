import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import fp from 'fastify-plugin'
import packageJson from '../package.json' with { type: 'json' }

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
      // Shared schemas keep their $id as their name under components.schemas.
      refResolver: {
        buildLocalReference: (json, _baseUri, _fragment, index) => (json.$id as string | undefined) ?? `def-${index}`,
      },
    })
    await app.register(swaggerUi, { routePrefix: '/docs' })
  },
  { name: 'swagger', dependencies: ['problem-details'] },
)
