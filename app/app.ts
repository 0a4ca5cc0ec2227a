import path from 'node:path'
import { fileURLToPath } from 'node:url'
import autoLoad from '@fastify/autoload'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import type { DatabaseOptions } from '../plugins/db.ts'
import { requestId } from '../plugins/request-id.ts'
import type { Config } from '../schemas/config.ts'

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))

export interface AppOptions {
  config: Config
  database: DatabaseOptions
}

/** The root plugin: every shared plugin of plugins/, then every route plugin of routes/. */
const app: FastifyPluginAsync<AppOptions> = async (fastify, options) => {
  await fastify.register(autoLoad, { dir: path.join(root, 'plugins'), options })
  await fastify.register(autoLoad, {
    dir: path.join(root, 'routes'),
    options,
    // Routes spell out their whole path, so a path found in openapi.yaml can be grepped.
    dirNameRoutePrefix: false,
  })
}
export default app

/**
 * Builds the whole service on the given configuration, not yet listening. app/server.ts adds
 * the process around it; tests call this directly.
 */
export async function buildApp(options: AppOptions, loggerInstance?: FastifyBaseLogger): Promise<FastifyInstance> {
  const { config } = options
  const fastify = Fastify({
    ...(loggerInstance ? { loggerInstance } : { logger: { level: config.LOG_LEVEL } }),
    genReqId: requestId,
    bodyLimit: config.BODY_LIMIT_BYTES,
    keepAliveTimeout: config.HTTP_KEEP_ALIVE_TIMEOUT_MS,
    requestTimeout: config.HTTP_REQUEST_TIMEOUT_MS,
    return503OnClosing: true,
    ajv: {
      // Report every failing field at once, and reject unknown fields instead of dropping them.
      customOptions: { allErrors: true, removeAdditional: false, coerceTypes: 'array', useDefaults: true },
    },
  }).withTypeProvider<TypeBoxTypeProvider>()
  // Not encapsulated: decorations (app.migrations, app.swagger, …) must reach this instance.
  await fastify.register(fp(app), options)
  return fastify
}
